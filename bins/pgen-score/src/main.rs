//! pgen-score: a prediction against the truth with the field's metrics (per row and overall),
//! as a table and a bar plot; the Kaggle submission CSV of a prediction for an id_map; and the
//! choice of a route's clip on its inner hold-out. (A generative model's log-likelihood score is
//! pgen-loglik.)
use anyhow::{bail, Result};
use clap::Parser;
use perturbgen::atomic::OutputSet;
use perturbgen::clip::{choose_clip, Clip};
use perturbgen::io::de_table::DeTable;
use perturbgen::io::id_map::IdMap;
use perturbgen::score::{plot_scores, score, write_scores, Metric};
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(version, about = "Score predictions (MRRMSE, OP3's metrics, DE-gene overlap, discrimination), write Kaggle submissions, choose a route's clip")]
struct Args {
    /// Prediction (de_train layout).
    #[arg(long)]
    prediction: PathBuf,
    /// Truth (de_train layout).
    #[arg(long)]
    truth: Option<PathBuf>,
    /// Clip the prediction's values to ±VALUE before scoring and in the submission (`none` = no clip).
    #[arg(long, conflicts_with = "clip_file")]
    clip: Option<String>,
    /// The clip, from a file written by --out-clip.
    #[arg(long)]
    clip_file: Option<PathBuf>,
    /// Per-row metrics and their means (CSV).
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
    /// Choose the clip among these (comma-separated, `none` or positive numbers) by --metric
    /// against --truth (a route's inner hold-out), and write it to --out-clip.
    #[arg(long, requires_all = ["out_clip", "truth"], conflicts_with_all = ["clip", "clip_file"])]
    choose_clip: Option<String>,
    #[arg(long, default_value = "mrrmse")]
    metric: Metric,
    #[arg(long)]
    out_clip: Option<PathBuf>,
    #[command(flatten)]
    common: perturbgen_cli::CommonArgs,
}

fn main() {
    let args: Args = perturbgen_cli::parse_args();
    perturbgen_cli::main(args.common.verbose, || run(args));
}

fn parse_clip(text: &str) -> Result<Clip> {
    Ok(Clip::parse(text, Path::new("--clip")).map_err(|_| anyhow::anyhow!("--clip `{text}`: expected `none` or a positive number"))?)
}

fn run(args: Args) -> Result<()> {
    if args.truth.is_none() && args.submission.is_none() {
        bail!("nothing to do: give --truth (to score) and/or --id-map with --submission (to write a submission)");
    }
    let prediction_path = &args.prediction;
    let mut prediction = DeTable::read(prediction_path)?;
    let mut out = OutputSet::new();
    if let Some(candidates) = &args.choose_clip {
        let truth_path = args.truth.as_ref().expect("clap requires it");
        let candidates: Vec<Clip> = candidates.split(',').map(parse_clip).collect::<Result<_>>()?;
        let (chosen, tried) = choose_clip(&candidates, args.metric, &DeTable::read(truth_path)?, &prediction, truth_path, prediction_path)?;
        for (c, v) in &tried {
            log::info!("clip {}: {} {}", c.label(), args.metric, v.map_or("undefined".into(), |v| format!("{v:.6}")));
        }
        println!("clip {} (best {} on {})", chosen.label(), args.metric, truth_path.display());
        chosen.write(&out.stage(args.out_clip.as_ref().expect("clap requires it"))?)?;
        out.commit()?;
        return Ok(());
    }
    let clip = match (&args.clip, &args.clip_file) {
        (Some(c), _) => parse_clip(c)?,
        (None, Some(f)) => Clip::read(f)?,
        (None, None) => Clip::NONE,
    };
    clip.apply(&mut prediction);
    if let Some(truth_path) = &args.truth {
        let truth = DeTable::read(truth_path)?;
        let scores = score(&truth, &prediction, truth_path, prediction_path)?;
        println!(
            "MRRMSE {:.6} (truth clipped ±4: {:.6}), Pearson {:.4} over {} rows; prediction clip {}",
            scores.mrrmse,
            scores.get(Metric::MrrmseClip4).unwrap_or(f64::NAN),
            scores.get(Metric::Pearson).unwrap_or(f64::NAN),
            scores.rows.len(),
            clip.label()
        );
        if let Some(p) = &args.out_table {
            write_scores(&out.stage(p)?, &scores, &clip.label())?;
        }
        if let Some(p) = &args.plot {
            let title = if clip == Clip::NONE { args.title.clone() } else { format!("{} (clip ±{})", args.title, clip.label()) };
            plot_scores(&out.stage(p)?, &scores, &title)?;
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
