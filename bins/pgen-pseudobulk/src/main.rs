//! pgen-pseudobulk: sums counts per plate × well × cell type.
use anyhow::{bail, Result};
use clap::Parser;
use perturbgen::cells::Cells;
use perturbgen::pseudobulk::PseudoBulk;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(version, about = "Pseudo-bulk: sum counts per plate, well and cell type")]
struct Args {
    /// Count tables (counts.parquet layout); repeat together with --obs to pool cell sets.
    #[arg(long, required = true)]
    counts: Vec<PathBuf>,
    #[arg(long, required = true)]
    obs: Vec<PathBuf>,
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
    if args.counts.len() != args.obs.len() {
        bail!("{} --counts but {} --obs: give them in pairs", args.counts.len(), args.obs.len());
    }
    perturbgen::threads::with_threads(args.common.threads(), || -> Result<()> {
        let sets: Vec<Cells> = args.counts.iter().zip(&args.obs).map(|(c, o)| Cells::read(c, o)).collect::<perturbgen::Result<_>>()?;
        let inputs: Vec<(&Cells, &std::path::Path)> = sets.iter().zip(&args.counts).map(|(c, p)| (c, p.as_path())).collect();
        let pb = PseudoBulk::from_cells(&inputs)?;
        log::info!("{} pseudo-bulk samples from {} cells", pb.n_samples(), sets.iter().map(|s| s.len()).sum::<usize>());
        pb.write(&args.out)?;
        Ok(())
    })?
}
