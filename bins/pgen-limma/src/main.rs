//! pgen-limma: the official DE recipe (edgeR TMM → voom → lmFit → contrasts → eBayes) for one
//! cell type, run in R by scripts/limma_de.R; writes signed −log10 P in the de_train layout and,
//! with --out-h5ad, limma's numbers (logFC, AveExpr, t, P.Value, adj.P.Val) as AnnData.
use anyhow::Result;
use clap::Parser;
use perturbgen::io::id_map::IdMap;
use perturbgen::limma::{run_limma_stats, run_limma_with_predicted};
use perturbgen::pseudobulk::PseudoBulk;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(version, about = "Differential expression with limma for one cell type")]
struct Args {
    #[arg(long)]
    pseudobulk: PathBuf,
    #[arg(long)]
    cell_type: String,
    /// Samples a model predicted (same layout as --pseudobulk), fitted together with
    /// --pseudobulk's real ones but with the residual variance taken from the real ones alone
    /// (what the generation, forest and external routes do).
    #[arg(long)]
    predicted: Option<PathBuf>,
    #[command(flatten)]
    limma: perturbgen_cli::LimmaArgs,
    /// The `de` section (the design, negative control, Rscript) is this stage's own.
    #[command(flatten)]
    params: perturbgen_cli::ConfigArgs,
    /// Keep only the pairs of this id_map (e.g. the hold-out targets).
    #[arg(long)]
    targets: Option<PathBuf>,
    #[arg(long)]
    out: PathBuf,
    /// Also write the table as AnnData: X = the --out values, layers logFC, AveExpr, t,
    /// P.Value, adj.P.Val, obs = the pairs, var = the genes.
    #[arg(long)]
    out_h5ad: Option<PathBuf>,
    /// The name the .h5ad records in uns/route (e.g. de_train, truth).
    #[arg(long, default_value = "limma")]
    route: String,
    #[command(flatten)]
    common: perturbgen_cli::CommonArgs,
}

fn main() {
    let args: Args = perturbgen_cli::parse_args();
    perturbgen_cli::main(args.common.verbose, || run(args));
}

fn run(args: Args) -> Result<()> {
    let pb = PseudoBulk::read(&args.pseudobulk)?;
    let targets = args.targets.as_deref().map(IdMap::read).transpose()?;
    let de = args.params.checked::<perturbgen::params::de::DeParams>()?;
    let config = de.limma(args.limma.script.clone(), args.common.threads());
    let mut stats = match &args.predicted {
        Some(path) => run_limma_with_predicted(&pb, &PseudoBulk::read(path)?, &args.cell_type, &config, targets.as_ref(), &args.pseudobulk)?,
        None => run_limma_stats(&pb, &args.cell_type, &config, targets.as_ref(), &args.pseudobulk)?,
    };
    stats.route.clone_from(&args.route);
    let table = stats.table();
    log::info!("{}: {} compounds × {} genes", args.cell_type, table.n_rows(), table.genes.len());
    table.write(&args.out)?;
    if let Some(path) = &args.out_h5ad {
        stats.write_h5ad(path)?;
    }
    Ok(())
}
