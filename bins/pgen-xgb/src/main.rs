//! pgen-xgb: XGBoost on the DE values — one regressor per gene on one-hot (cell type, compound)
//! and optional per-gene extras, predicting every target pair.
use anyhow::Result;
use clap::Parser;
use perturbgen::io::de_table::DeTable;
use perturbgen::io::id_map::IdMap;
use perturbgen::regress::features::Extra;
use perturbgen::regress::xgb::{parse_param, predict, XgbParams};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(version, about = "XGBoost per gene on the DE values (one-hot cell type + compound)")]
struct Args {
    /// Training DE table (de_train layout).
    #[arg(long)]
    de_train: PathBuf,
    /// Target pairs (id_map layout).
    #[arg(long)]
    targets: PathBuf,
    /// Prediction for the targets (de_train layout).
    #[arg(long)]
    out: PathBuf,
    /// Extra per-gene feature (repeatable): compound_mean, cell_type_mean.
    #[arg(long = "feature")]
    features: Vec<String>,
    /// Boosting rounds (num_boost_round).
    #[arg(long, default_value_t = 100)]
    rounds: usize,
    #[arg(long, default_value_t = 0.3)]
    eta: f64,
    #[arg(long, default_value_t = 6)]
    max_depth: u32,
    #[arg(long, default_value_t = 1.0)]
    min_child_weight: f64,
    #[arg(long, default_value_t = 1.0)]
    subsample: f64,
    #[arg(long, default_value_t = 1.0)]
    colsample_bytree: f64,
    /// L2 regularisation (reg_lambda).
    #[arg(long, default_value_t = 1.0)]
    lambda: f64,
    /// L1 regularisation (reg_alpha).
    #[arg(long, default_value_t = 0.0)]
    alpha: f64,
    #[arg(long, default_value_t = 0.0)]
    gamma: f64,
    /// exact, approx or hist.
    #[arg(long, default_value = "exact")]
    tree_method: String,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Initial prediction (XGBoost's own default is 0.5; DE values centre on 0).
    #[arg(long, default_value_t = 0.0)]
    base_score: f64,
    /// Fit each cell type's values divided by its RMS DE value; predictions are scaled back by
    /// the target cell type's.
    #[arg(long)]
    cell_type_scale: bool,
    /// Any other XGBoost parameter as name=value (repeatable; set last).
    #[arg(long = "param")]
    params: Vec<String>,
    #[command(flatten)]
    common: perturbgen::cli::CommonArgs,
}

fn main() {
    let args = Args::parse();
    perturbgen::cli::main(args.common.verbose, || run(args));
}

fn run(args: Args) -> Result<()> {
    let extras = args.features.iter().map(|f| Extra::parse(f)).collect::<perturbgen::Result<Vec<_>>>()?;
    let params = XgbParams {
        rounds: args.rounds,
        eta: args.eta,
        max_depth: args.max_depth,
        min_child_weight: args.min_child_weight,
        subsample: args.subsample,
        colsample_bytree: args.colsample_bytree,
        lambda: args.lambda,
        alpha: args.alpha,
        gamma: args.gamma,
        tree_method: args.tree_method.clone(),
        seed: args.seed,
        base_score: args.base_score,
        cell_type_scale: args.cell_type_scale,
        extra: args.params.iter().map(|p| parse_param(p)).collect::<perturbgen::Result<Vec<_>>>()?,
    };
    params.validate()?;
    let targets = IdMap::read(&args.targets)?;
    let de_train = DeTable::read(&args.de_train)?;
    let bar = perturbgen::progress::bar(de_train.genes.len() as u64, "genes");
    let start = std::time::Instant::now();
    let prediction = perturbgen::threads::with_threads(args.common.threads, || {
        predict(&de_train, &targets, &params, &extras, &args.de_train, &args.targets, &|| bar.inc(1))
    })??;
    bar.finish_and_clear();
    log::info!("fitted {} genes in {:.1} s with {} threads", de_train.genes.len(), start.elapsed().as_secs_f64(), args.common.threads);
    prediction.write(&args.out)?;
    Ok(())
}
