//! pgen-baseline: predictions that need no model (the all-zero matrix).
use anyhow::Result;
use clap::{Parser, ValueEnum};
use perturbgen::io::de_table::DeTable;
use perturbgen::io::id_map::IdMap;
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Kind {
    /// Every value 0 (public board 0.90).
    Zero,
}

#[derive(Parser, Debug)]
#[command(version, about = "Baseline predictions for the target pairs")]
struct Args {
    #[arg(long, value_enum, default_value = "zero")]
    kind: Kind,
    /// Target pairs (id_map layout).
    #[arg(long)]
    targets: PathBuf,
    /// Training DE table: gene order and compound metadata.
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
    let prediction = match args.kind {
        Kind::Zero => perturbgen::baseline::zero_prediction(&targets, &de_train, &args.de_train)?,
    };
    prediction.write(&args.out)?;
    Ok(())
}
