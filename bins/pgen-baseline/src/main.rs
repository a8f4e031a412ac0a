//! pgen-baseline: predictions that need no model (OP3's baselines: zero, the global mean, the
//! cell type's mean, the compound's mean).
use anyhow::Result;
use clap::{Parser, ValueEnum};
use perturbgen::io::de_table::DeTable;
use perturbgen::io::id_map::IdMap;
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Kind {
    /// Every value 0 (public board 0.90).
    Zero,
    /// The mean of every de_train row.
    GlobalMean,
    /// The target cell type's mean over its measured compounds (0 where it has none).
    MeanCellType,
    /// The target compound's mean over the cell types it was measured in.
    MeanCompound,
}

#[derive(Parser, Debug)]
#[command(version, about = "Baseline predictions for the target pairs")]
struct Args {
    #[arg(long, value_enum, default_value = "zero")]
    kind: Kind,
    /// Target pairs (id_map layout).
    #[arg(long)]
    targets: PathBuf,
    /// Training DE table (its positive controls left out, as for the regressors): gene order,
    /// compound metadata and the rows the means are taken over.
    #[arg(long)]
    de_train: PathBuf,
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
    let targets = IdMap::read(&args.targets)?;
    let de_train = DeTable::read(&args.de_train)?;
    use perturbgen::baseline::{predict, Baseline};
    let baseline = match args.kind {
        Kind::Zero => Baseline::Zero,
        Kind::GlobalMean => Baseline::GlobalMean,
        Kind::MeanCellType => Baseline::MeanCellType,
        Kind::MeanCompound => Baseline::MeanCompound,
    };
    let prediction = predict(baseline, &targets, &de_train, &args.de_train)?;
    log::info!("{}: {} targets × {} genes", baseline.name(), prediction.n_rows(), prediction.genes.len());
    prediction.write(&args.out)?;
    Ok(())
}
