//! pgen-calibrate: the generation settings set to `auto` (generate.source, reference, emit),
//! chosen on the generative inner hold-out: each candidate's prediction of the inner pairs,
//! from the model trained without their cells, is scored against their measured DE at its best
//! clip; the best by the ranking metric is written for pgen-generate --calibration
//! (perturbgen_models::calibration).
use anyhow::{Context, Result};
use clap::Parser;
use perturbgen::atomic::OutputSet;
use perturbgen::clip::Clip;
use perturbgen::io::de_table::DeTable;
use perturbgen::score::Metric;
use perturbgen_models::calibration::{choose, plot_table, write_table, Calibration, Candidate};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(version, about = "Choose the `auto` generation settings on the generative inner hold-out")]
struct Args {
    /// A candidate: `<source>.<reference>.<emit>=PREDICTION` (its prediction of the inner pairs,
    /// de_train layout). Repeat for each; ties go to the first.
    #[arg(long = "candidate", required = true)]
    candidates: Vec<String>,
    /// The inner pairs' measured DE (de_train layout).
    #[arg(long)]
    truth: PathBuf,
    /// The clips each candidate is scored at, its best counting (comma-separated, `none` or
    /// positive numbers: leaderboard.clip).
    #[arg(long, default_value = "none")]
    clips: String,
    /// The ranking metric (leaderboard.metric).
    #[arg(long, default_value = "mrrmse")]
    metric: Metric,
    /// The pick (JSON: source, reference, emit) for pgen-generate --calibration.
    #[arg(long)]
    out: PathBuf,
    /// Every candidate's score (CSV: candidate, settings, clip, metric, mrrmse, pearson, chosen).
    #[arg(long)]
    out_table: PathBuf,
    /// The same as a bar plot (PNG), the chosen candidate marked.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// The plot's title.
    #[arg(long, default_value = "generation settings on the inner hold-out")]
    title: String,
    #[command(flatten)]
    common: perturbgen_cli::CommonArgs,
}

fn main() {
    let args: Args = perturbgen_cli::parse_args();
    perturbgen_cli::main(args.common.verbose, || run(args));
}

fn run(args: Args) -> Result<()> {
    let candidates = args
        .candidates
        .iter()
        .map(|c| {
            let (name, path) = c.split_once('=').with_context(|| format!("--candidate `{c}`: expected <source>.<reference>.<emit>=PREDICTION"))?;
            let settings: Calibration = name.parse().map_err(|e| anyhow::anyhow!("--candidate {e}"))?;
            Ok(Candidate { settings, prediction: PathBuf::from(path) })
        })
        .collect::<Result<Vec<_>>>()?;
    let clips = args.clips.split(',').map(|c| Clip::parse(c.trim(), std::path::Path::new("--clips"))).collect::<perturbgen::Result<Vec<_>>>()?;
    let truth = DeTable::read(&args.truth)?;
    let (chosen, tried) = choose(&candidates, &clips, args.metric, &truth, &args.truth)?;
    for t in &tried {
        log::info!("{}: {} {} at clip {} (MRRMSE {:.4})", t.settings.name(), args.metric, t.value.map_or("undefined".into(), |v| format!("{v:.4}")), t.clip.label(), t.mrrmse);
    }
    let mut out = OutputSet::new();
    write_table(&out.stage(&args.out_table)?, &tried, chosen, args.metric)?;
    tried[chosen].settings.write(&out.stage(&args.out)?)?;
    if let Some(path) = &args.plot {
        plot_table(&out.stage(path)?, &tried, chosen, args.metric, &args.title)?;
    }
    out.commit()?;
    println!("{} (best {} on {})", tried[chosen].settings.name(), args.metric, args.truth.display());
    Ok(())
}
