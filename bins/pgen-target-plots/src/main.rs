//! pgen-target-plots: per target pair, one PNG with the route's predicted vs the true signed
//! −log10 P (top genes by |truth| named, identity line, Pearson in the title) and the truth's
//! volcano plot, from the truth .h5ad (pgen-merge-de --out-h5ad) and a prediction table.
use anyhow::{bail, Result};
use clap::Parser;
use perturbgen::io::de_stats::DeStats;
use perturbgen::io::de_table::DeTable;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(version, about = "Figures per target pair: predicted vs true, and the truth's volcano")]
struct Args {
    /// The targets' true DE with limma's statistics (.h5ad).
    #[arg(long)]
    truth: PathBuf,
    /// The route to draw; or give --scores to draw the best-scoring one.
    #[arg(long, required_unless_present = "scores", conflicts_with = "scores")]
    route: Option<String>,
    /// A scores table (route,mrrmse; best first): its first row's route is drawn.
    #[arg(long)]
    scores: Option<PathBuf>,
    /// The folder of the routes' predictions (<route>.parquet, de_train layout).
    #[arg(long)]
    predictions: PathBuf,
    /// The folder to write (replaced whole): one PNG per target and targets.csv.
    #[arg(long)]
    out_dir: PathBuf,
    #[command(flatten)]
    common: perturbgen_cli::CommonArgs,
}

fn main() {
    let args: Args = perturbgen_cli::parse_args();
    perturbgen_cli::main(args.common.verbose, || run(args));
}

fn run(args: Args) -> Result<()> {
    let route = match (&args.route, &args.scores) {
        (Some(r), _) => r.clone(),
        (None, Some(scores)) => perturbgen::target_plots::best_route(scores)?,
        (None, None) => unreachable!("clap requires --route or --scores"),
    };
    if route.is_empty() || route.contains('/') {
        bail!("route `{route}` cannot name a prediction file");
    }
    let prediction_path = args.predictions.join(format!("{route}.parquet"));
    let truth = DeStats::read_h5ad(&args.truth)?;
    let prediction = DeTable::read(&prediction_path)?;
    let figures = perturbgen::target_plots::write_target_plots(&truth, &args.truth, &prediction, &prediction_path, &route, &args.out_dir)?;
    log::info!("route {route}: {} target figures in {}", figures.len(), args.out_dir.display());
    Ok(())
}
