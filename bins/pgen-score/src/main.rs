//! pgen-score: MRRMSE of a prediction against the truth, as a table and a bar plot; also the
//! Kaggle submission CSV of a prediction for an id_map; with --loglik, the NB log-likelihood
//! of held-out cells under a trained generative model against the group-mean NB baseline.
use anyhow::{bail, Result};
use clap::Parser;
use perturbgen::atomic::OutputSet;
use perturbgen::io::de_table::DeTable;
use perturbgen::io::id_map::IdMap;
use perturbgen::score::{plot_scores, score, write_scores};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(version, about = "Score predictions (MRRMSE) and write Kaggle submissions")]
struct Args {
    /// Prediction (de_train layout).
    #[arg(long, required_unless_present = "loglik")]
    prediction: Option<PathBuf>,
    /// Score a generative model instead: the mean NB log-likelihood per cell of held-out cells
    /// (--model, --counts, --obs, --cells), with the per-gene NB baseline whose mean is the
    /// (cell type, compound) group's training mean (--baseline-counts, --baseline-obs).
    #[arg(long, requires_all = ["model", "counts", "obs"])]
    loglik: bool,
    /// pgen-train output folder (its model.* is loaded).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Cells to score (counts and obs).
    #[arg(long)]
    counts: Option<PathBuf>,
    #[arg(long)]
    obs: Option<PathBuf>,
    /// Only these obs_ids of --counts (one per line), e.g. the validation cells.
    #[arg(long)]
    cells: Option<PathBuf>,
    /// Training cells for the baseline (without --cells' cells).
    #[arg(long, requires = "baseline_obs")]
    baseline_counts: Option<PathBuf>,
    #[arg(long)]
    baseline_obs: Option<PathBuf>,
    /// DGD: Adam steps fitting the scored cells' latents (decoder frozen).
    #[arg(long, default_value_t = 100)]
    fit_steps: usize,
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Truth (de_train layout).
    #[arg(long)]
    truth: Option<PathBuf>,
    /// Per-row RMSE and overall MRRMSE (CSV).
    #[arg(long)]
    out_table: Option<PathBuf>,
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Name shown in the plot title.
    #[arg(long, default_value = "prediction")]
    title: String,
    /// With --submission: the ids and row order of the Kaggle submission.
    #[arg(long)]
    id_map: Option<PathBuf>,
    #[arg(long)]
    submission: Option<PathBuf>,
    #[command(flatten)]
    common: perturbgen::cli::CommonArgs,
}

fn main() {
    let args = Args::parse();
    perturbgen::model::limit_threads(args.common.threads);
    perturbgen::model::keep_freed_memory();
    perturbgen::cli::main(args.common.verbose, || if args.loglik { run_loglik(args) } else { run(args) });
}

fn run_loglik(args: Args) -> Result<()> {
    use perturbgen::model::loglik::{write_loglik, LoglikRun};
    let (Some(model), Some(counts), Some(obs)) = (&args.model, &args.counts, &args.obs) else {
        bail!("--loglik needs --model, --counts and --obs");
    };
    let Some(table) = &args.out_table else { bail!("--loglik needs --out-table") };
    let run = LoglikRun {
        model: model.clone(),
        counts: counts.clone(),
        obs: obs.clone(),
        cells: args.cells.clone(),
        baseline: args.baseline_counts.clone().zip(args.baseline_obs.clone()),
        fit_steps: args.fit_steps,
        device: args.device.clone(),
    };
    let rows = perturbgen::threads::with_threads(args.common.threads, || run.run())??;
    for r in &rows {
        println!("{}: mean log-likelihood per cell {:.4} over {} cells × {} genes", r.name, r.mean_per_cell, r.cells, r.genes);
    }
    let mut out = OutputSet::new();
    write_loglik(&out.stage(table)?, &rows)?;
    if let Some(p) = &args.plot {
        perturbgen::model::loglik::plot_loglik(&out.stage(p)?, &rows, &args.title)?;
    }
    out.commit()?;
    Ok(())
}

fn run(args: Args) -> Result<()> {
    let Some(prediction_path) = &args.prediction else { bail!("--prediction is required") };
    let prediction = DeTable::read(prediction_path)?;
    let mut out = OutputSet::new();
    if let Some(truth_path) = &args.truth {
        let truth = DeTable::read(truth_path)?;
        let scores = score(&truth, &prediction, truth_path, prediction_path)?;
        println!("MRRMSE {:.6} over {} rows", scores.mrrmse, scores.rows.len());
        if let Some(p) = &args.out_table {
            write_scores(&out.stage(p)?, &scores)?;
        }
        if let Some(p) = &args.plot {
            plot_scores(&out.stage(p)?, &scores, &args.title)?;
        }
    } else if args.out_table.is_some() || args.plot.is_some() {
        bail!("--out-table and --plot need --truth");
    }
    match (&args.id_map, &args.submission) {
        (Some(ids), Some(sub)) => {
            let ids_table = IdMap::read(ids)?;
            let values = perturbgen::score::submission_values(&prediction, &ids_table, prediction_path)?;
            perturbgen::io::submission::write_submission(&out.stage(sub)?, &ids_table, &prediction.genes, &values)?;
        }
        (None, None) => {}
        _ => bail!("--id-map and --submission go together"),
    }
    out.commit()?;
    Ok(())
}
