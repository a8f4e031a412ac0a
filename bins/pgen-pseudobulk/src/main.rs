//! pgen-pseudobulk: sums counts per plate × well × cell type; with --half, only one half of
//! every sample's cells (the noise ceiling, perturbgen::halves).
use anyhow::{bail, Result};
use clap::Parser;
use perturbgen::cells::Cells;
use perturbgen::halves::{half_rows, Half};
use perturbgen::params::ceiling::CeilingParams;
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
    /// Sum only this half (first | second) of every sample's cells, split by the `ceiling`
    /// section's seed (the pooled sets' cells of a sample are split together).
    #[arg(long, value_name = "first|second")]
    half: Option<Half>,
    /// With --half: the `ceiling` section (its `seed`).
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
    if args.counts.len() != args.obs.len() {
        bail!("{} --counts but {} --obs: give them in pairs", args.counts.len(), args.obs.len());
    }
    // Read (and refuse a bad section) before any cells are loaded.
    let p = &args.params;
    let seed = match args.half {
        Some(_) => Some(p.checked::<CeilingParams>()?.seed),
        None if p.config.is_some() || p.params.is_some() || !p.set.is_empty() || !p.sections.is_empty() => {
            bail!("--config/--params/--set/--section set the `ceiling` seed: they need --half")
        }
        None => None,
    };
    perturbgen::threads::with_threads(args.common.threads(), || -> Result<()> {
        let mut sets: Vec<Cells> = args.counts.iter().zip(&args.obs).map(|(c, o)| Cells::read(c, o)).collect::<perturbgen::Result<_>>()?;
        if let (Some(half), Some(seed)) = (args.half, seed) {
            let obs: Vec<&perturbgen::ObsTable> = sets.iter().map(|s| &s.obs).collect();
            let rows = half_rows(&obs, half, seed);
            sets = sets.iter().zip(&rows).map(|(s, r)| s.take(r)).collect();
            log::info!("half {half} (seed {seed}): {} cells", rows.iter().map(Vec::len).sum::<usize>());
        }
        let inputs: Vec<(&Cells, &std::path::Path)> = sets.iter().zip(&args.counts).map(|(c, p)| (c, p.as_path())).collect();
        let pb = PseudoBulk::from_cells(&inputs)?;
        log::info!("{} pseudo-bulk samples from {} cells", pb.n_samples(), sets.iter().map(|s| s.len()).sum::<usize>());
        pb.write(&args.out)?;
        Ok(())
    })?
}
