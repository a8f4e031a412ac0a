//! pgen-forest: random forests on pseudo-bulk counts — one-hot sample covariates → log-CPM
//! (per gene or per principal component) and library size — predict the target pairs' wells;
//! limma then computes their DE against each target cell type's real samples.
use anyhow::Result;
use clap::Parser;
use perturbgen::io::id_map::IdMap;
use perturbgen::pseudobulk::PseudoBulk;
use perturbgen::regress::forest::{n_work_units, predict, ForestParams, TargetKind};
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
    /// genes (one forest per gene) or pca (one forest per principal component of log-CPM).
    #[arg(long, default_value = "genes")]
    target: String,
    /// Principal components with --target pca.
    #[arg(long, default_value_t = 50)]
    components: usize,
    /// One-hot feature column (repeatable): cell_type, sm_name, donor_id, plate_name, row, well.
    /// Default: cell_type, sm_name, donor_id, plate_name, row.
    #[arg(long = "feature")]
    features: Vec<String>,
    /// Trees per forest.
    #[arg(long, default_value_t = 100)]
    n_trees: usize,
    /// Features tried per split, as a fraction of the one-hot columns (rounded up).
    #[arg(long, default_value_t = 1.0 / 3.0)]
    m_fraction: f64,
    /// Features tried per split (overrides --m-fraction).
    #[arg(long)]
    m: Option<usize>,
    /// Maximum tree depth (unset = grow until leaves are pure or at min_samples_leaf).
    #[arg(long)]
    max_depth: Option<u16>,
    #[arg(long, default_value_t = 3)]
    min_samples_leaf: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[command(flatten)]
    limma: perturbgen::cli::LimmaArgs,
    #[command(flatten)]
    common: perturbgen::cli::CommonArgs,
}

fn main() {
    let args = Args::parse();
    perturbgen::cli::main(args.common.verbose, || run(args));
}

fn run(args: Args) -> Result<()> {
    let mut params = ForestParams {
        n_trees: args.n_trees,
        m_fraction: args.m_fraction,
        m: args.m,
        max_depth: args.max_depth,
        min_samples_leaf: args.min_samples_leaf,
        seed: args.seed,
        target: TargetKind::parse(&args.target, args.components)?,
        ..Default::default()
    };
    if !args.features.is_empty() {
        params.features = args.features.clone();
    }
    params.validate()?;
    let targets = IdMap::read(&args.targets)?;
    let pb = PseudoBulk::read(&args.pseudobulk)?;
    let limma = args.limma.config(args.common.threads);
    let bar = perturbgen::progress::bar(n_work_units(&pb, &params) as u64, "forests");
    let start = std::time::Instant::now();
    let (table, prediction) = perturbgen::threads::with_threads(args.common.threads, || {
        predict(&pb, &targets, &params, &limma, &args.pseudobulk, &args.targets, &|| bar.inc(1))
    })??;
    bar.finish_and_clear();
    log::info!(
        "{} predicted samples, {} target pairs × {} genes in {:.1} s with {} threads",
        prediction.predicted.n_samples(),
        table.n_rows(),
        table.genes.len(),
        start.elapsed().as_secs_f64(),
        args.common.threads
    );
    if let Some(path) = &args.out_pseudobulk {
        prediction.predicted.write(path)?;
    }
    table.write(&args.out)?;
    Ok(())
}
