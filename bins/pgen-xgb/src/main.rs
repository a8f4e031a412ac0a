//! pgen-xgb: XGBoost on the DE values — one regressor per gene on one-hot (cell type, compound)
//! and optional per-gene extras, predicting every target pair.
use anyhow::Result;
use clap::Parser;
use perturbgen::io::de_table::DeTable;
use perturbgen::io::id_map::IdMap;
use perturbgen_regress::xgb::{predict, XgbParams};
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
    /// XGBoost parameters: `xgb` section (see `perturbgen_regress::xgb::XgbParams`).
    #[command(flatten)]
    params: perturbgen_cli::ConfigArgs,
    #[command(flatten)]
    common: perturbgen_cli::CommonArgs,
}

fn main() {
    let args: Args = perturbgen_cli::parse_args();
    perturbgen_cli::main(args.common.verbose, || run(args));
}

fn run(args: Args) -> Result<()> {
    let params = args.params.checked::<XgbParams>()?;
    let targets = IdMap::read(&args.targets)?;
    let de_train = DeTable::read(&args.de_train)?;
    let threads = args.common.threads();
    let bar = perturbgen::progress::bar(de_train.genes.len() as u64, "genes");
    let start = std::time::Instant::now();
    let prediction = perturbgen::threads::with_threads(threads, || predict(&de_train, &targets, &params, &args.de_train, &args.targets, &|| bar.inc(1)))??;
    bar.finish_and_clear();
    log::info!("fitted {} genes in {:.1} s with {threads} threads", de_train.genes.len(), start.elapsed().as_secs_f64());
    prediction.write(&args.out)?;
    Ok(())
}
