//! pgen-limma: the official DE recipe (edgeR TMM → voom → lmFit → contrasts → eBayes) for one
//! cell type, run in R by scripts/limma_de.R; writes signed −log10 P in the de_train layout.
use anyhow::Result;
use clap::Parser;
use perturbgen::io::id_map::IdMap;
use perturbgen::limma::run_limma;
use perturbgen::pseudobulk::PseudoBulk;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(version, about = "Differential expression with limma for one cell type")]
struct Args {
    #[arg(long)]
    pseudobulk: PathBuf,
    #[arg(long)]
    cell_type: String,
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
    let table = run_limma(&pb, &args.cell_type, &config, targets.as_ref(), &args.pseudobulk)?;
    log::info!("{}: {} compounds × {} genes", args.cell_type, table.n_rows(), table.genes.len());
    table.write(&args.out)?;
    Ok(())
}
