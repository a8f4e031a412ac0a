//! pgen-forest: random forests on pseudo-bulk counts — one-hot sample covariates → log-CPM
//! (per gene or per principal component) and library size — predict the target pairs' wells;
//! limma then computes their DE against each target cell type's real samples.
use anyhow::Result;
use clap::Parser;
use perturbgen::io::id_map::IdMap;
use perturbgen::pseudobulk::PseudoBulk;
use perturbgen_regress::forest::{n_work_units, predict, ForestParams};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(version, about = "Random forests on pseudo-bulk counts → predicted target samples → limma DE")]
struct Args {
    /// Training pseudo-bulk (pgen-pseudobulk output); samples of target pairs are left out.
    #[arg(long)]
    pseudobulk: PathBuf,
    /// Target pairs (id_map layout).
    #[arg(long)]
    targets: PathBuf,
    /// DE prediction for the targets (de_train layout).
    #[arg(long)]
    out: PathBuf,
    /// Also write the predicted pseudo-bulk samples here (pseudo-bulk layout).
    #[arg(long)]
    out_pseudobulk: Option<PathBuf>,
    /// Also write limma's statistics of the prediction (logFC, AveExpr, t, P.Value, adj.P.Val)
    /// as AnnData, uns/route = forest (pgen-anndata --de).
    #[arg(long)]
    out_de_h5ad: Option<PathBuf>,
    /// Forest parameters: `forest` section (see `perturbgen_regress::forest::ForestParams`).
    #[command(flatten)]
    params: perturbgen_cli::ConfigArgs,
    #[command(flatten)]
    limma: perturbgen_cli::LimmaArgs,
    #[command(flatten)]
    common: perturbgen_cli::CommonArgs,
}

fn main() {
    let args: Args = perturbgen_cli::parse_args();
    perturbgen_cli::main(args.common.verbose, || run(args));
}

fn run(args: Args) -> Result<()> {
    let params = args.params.checked::<ForestParams>()?;
    let threads = args.common.threads();
    let targets = IdMap::read(&args.targets)?;
    let pb = PseudoBulk::read(&args.pseudobulk)?;
    let limma = args.limma.config(&args.params, threads)?;
    let bar = perturbgen::progress::bar(n_work_units(&pb, &params) as u64, "forests");
    let start = std::time::Instant::now();
    let (stats, prediction) = perturbgen::threads::with_threads(threads, || {
        predict(&pb, &targets, &params, &limma, &args.pseudobulk, &args.targets, &|| bar.inc(1))
    })??;
    bar.finish_and_clear();
    let table = stats.table();
    log::info!(
        "{} predicted samples, {} target pairs × {} genes in {:.1} s with {threads} threads",
        prediction.predicted.n_samples(),
        table.n_rows(),
        table.genes.len(),
        start.elapsed().as_secs_f64()
    );
    // The prediction and the samples it came from appear together.
    let mut out = perturbgen::atomic::OutputSet::new();
    if let Some(path) = &args.out_pseudobulk {
        prediction.predicted.write(&out.stage(path)?)?;
    }
    if let Some(path) = &args.out_de_h5ad {
        stats.write_h5ad(&out.stage(path)?)?;
    }
    table.write(&out.stage(&args.out)?)?;
    out.commit()?;
    Ok(())
}
