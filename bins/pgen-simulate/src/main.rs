//! pgen-simulate: writes a simulated data set in the Kaggle layout (SPEC §2), with the
//! withheld test cells and the true effects under `truth/`.
use anyhow::Result;
use clap::Parser;
use perturbgen::params::simulate::SimulateParams;
use perturbgen::simulate::simulate;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(version, about = "Simulate a Kaggle-format single-cell perturbation data set with known effects")]
struct Args {
    /// The `simulate` section (preset, seed, layout, sizes) is this stage's own
    /// (`--set preset=study`, `--set cells=5000`).
    #[command(flatten)]
    params: perturbgen_cli::ConfigArgs,
    /// Output folder.
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
    let config = args.params.checked::<SimulateParams>()?;
    let summary = perturbgen::threads::with_threads(args.common.threads(), || simulate(&config, &args.out))??;
    log::info!(
        "median total counts {:.0}, median max count {:.0}, median non-zero genes {:.0}",
        summary.median_total_counts, summary.median_max_count, summary.median_nonzero_genes
    );
    Ok(())
}
