//! pgen-score: MRRMSE of a prediction against the truth, as a table and a bar plot; also the
//! Kaggle submission CSV of a prediction for an id_map. (A generative model's log-likelihood
//! score is pgen-loglik.)
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
    #[arg(long)]
    prediction: PathBuf,
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
    common: perturbgen_cli::CommonArgs,
}

fn main() {
    let args: Args = perturbgen_cli::parse_args();
    perturbgen_cli::main(args.common.verbose, || run(args));
}

fn run(args: Args) -> Result<()> {
    if args.truth.is_none() && args.submission.is_none() {
        bail!("nothing to do: give --truth (to score) and/or --id-map with --submission (to write a submission)");
    }
    let prediction_path = &args.prediction;
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
