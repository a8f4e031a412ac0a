//! pgen-loglik: the mean NB log-likelihood per cell of held-out cells under a trained
//! generative model (pgen-train's output), next to the per-gene NB baseline whose mean is the
//! (cell type, compound) group's training mean.
use anyhow::Result;
use clap::Parser;
use perturbgen::atomic::OutputSet;
use perturbgen_models::config::TrainSection;
use perturbgen_models::loglik::{plot_loglik, write_loglik, LoglikRun};
use perturbgen::params::ParamGuard;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(version, about = "Score a generative model by the NB log-likelihood of held-out cells")]
struct Args {
    /// pgen-train output folder (its model.* is loaded).
    #[arg(long)]
    model: PathBuf,
    /// Cells to score (counts and obs).
    #[arg(long)]
    counts: PathBuf,
    #[arg(long)]
    obs: PathBuf,
    /// Only these obs_ids of --counts (one per line), e.g. the validation cells.
    #[arg(long)]
    cells: Option<PathBuf>,
    /// Training cells for the baseline (without --cells' cells).
    #[arg(long, requires = "baseline_obs")]
    baseline_counts: Option<PathBuf>,
    #[arg(long)]
    baseline_obs: Option<PathBuf>,
    /// Per-model mean log-likelihood (CSV).
    #[arg(long)]
    out_table: PathBuf,
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Name shown in the plot title.
    #[arg(long, default_value = "model")]
    title: String,
    /// `train` section: `device` and `loglik_fit_steps` are read from it.
    #[command(flatten)]
    params: perturbgen_cli::ConfigArgs,
    #[command(flatten)]
    common: perturbgen_cli::CommonArgs,
}

fn main() {
    let args: Args = perturbgen_cli::parse_args();
    perturbgen_models::limit_threads(args.common.threads());
    perturbgen_models::keep_freed_memory();
    perturbgen_cli::main(args.common.verbose, || run(args));
}

fn run(args: Args) -> Result<()> {
    let plan = args.params.load::<TrainSection>(TrainSection::SECTION)?.check()?;
    let run = LoglikRun {
        model: args.model.clone(),
        counts: args.counts.clone(),
        obs: args.obs.clone(),
        cells: args.cells.clone(),
        baseline: args.baseline_counts.clone().zip(args.baseline_obs.clone()),
        fit_steps: plan.loglik_fit_steps,
        device: plan.device.clone(),
    };
    let rows = perturbgen::threads::with_threads(args.common.threads(), || run.run())??;
    for r in &rows {
        println!("{}: mean log-likelihood per cell {:.4} over {} cells × {} genes", r.name, r.mean_per_cell, r.cells, r.genes);
    }
    let mut out = OutputSet::new();
    write_loglik(&out.stage(&args.out_table)?, &rows)?;
    if let Some(p) = &args.plot {
        plot_loglik(&out.stage(p)?, &rows, &args.title)?;
    }
    out.commit()?;
    Ok(())
}
