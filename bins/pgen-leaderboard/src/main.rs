//! pgen-leaderboard: every route's metrics on the targets as one table (ranked by one metric,
//! next to the baselines and the noise ceiling) and one figure, and the Kaggle submission of the
//! chosen route (named, or the best-scoring one).
use anyhow::{bail, Context, Result};
use clap::Parser;
use perturbgen::atomic::OutputSet;
use perturbgen::leaderboard::{choose, collect, plot, plot_value_histograms, write_table, Entry, Kind};
use perturbgen::score::Metric;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(version, about = "Leaderboard of routes (the field's metrics) and the chosen submission")]
struct Args {
    /// A route's pgen-score table, as ROUTE=PATH (repeatable). zero, global_mean,
    /// mean_cell_type and mean_compound are marked as baselines.
    #[arg(long = "score")]
    scores: Vec<String>,
    /// A reference's pgen-score table (the noise ceiling), as NAME=PATH: on the board, never submitted.
    #[arg(long = "reference")]
    references: Vec<String>,
    /// The metric routes are ranked (and the best route chosen) by.
    #[arg(long, default_value = "mrrmse")]
    metric: Metric,
    /// A route's submission CSV, as ROUTE=PATH (repeatable).
    #[arg(long = "submission")]
    submissions: Vec<String>,
    /// Route to submit; default: the best-scoring one.
    #[arg(long)]
    submit: Option<String>,
    /// Leaderboard table (route, kind, clip, every metric; best first).
    #[arg(long)]
    out_table: Option<PathBuf>,
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Copy of the chosen route's submission.
    #[arg(long)]
    out_submission: Option<PathBuf>,
    /// A DE table (the truth, or a route's prediction) for the value histogram, NAME=PATH (repeatable).
    #[arg(long = "values", requires = "values_plot")]
    values: Vec<String>,
    /// The value histogram: signed −log10 p distributions of the --values tables (PNG).
    #[arg(long)]
    values_plot: Option<PathBuf>,
    #[command(flatten)]
    common: perturbgen_cli::CommonArgs,
}

fn pairs(items: &[String], flag: &str) -> Result<Vec<(String, PathBuf)>> {
    items
        .iter()
        .map(|s| match s.split_once('=') {
            Some((r, p)) if !r.is_empty() && !p.is_empty() => Ok((r.to_string(), PathBuf::from(p))),
            _ => bail!("--{flag} `{s}`: expected ROUTE=PATH"),
        })
        .collect()
}

fn main() {
    let args: Args = perturbgen_cli::parse_args();
    perturbgen_cli::main(args.common.verbose, || run(args));
}

fn run(args: Args) -> Result<()> {
    let kind_of = |route: &str| if perturbgen::baseline::BASELINES.contains(&route) { Kind::Baseline } else { Kind::Route };
    let mut tables: Vec<(String, Kind, PathBuf)> = pairs(&args.scores, "score")?.into_iter().map(|(r, p)| (r.clone(), kind_of(&r), p)).collect();
    tables.extend(pairs(&args.references, "reference")?.into_iter().map(|(r, p)| (r, Kind::Reference, p)));
    let subs = pairs(&args.submissions, "submission")?;
    let entries: Vec<Entry> = collect(&tables, args.metric)?;
    let mut out = OutputSet::new();
    let mut chosen = None;
    if let Some(dst) = &args.out_submission {
        let routes: Vec<String> = subs.iter().map(|s| s.0.clone()).collect();
        let ranked: Vec<Entry> = entries.iter().filter(|e| routes.contains(&e.route)).cloned().collect();
        let route = choose(args.submit.as_deref(), &routes, &ranked)?;
        let src = &subs.iter().find(|s| s.0 == route).expect("chosen among routes").1;
        let staged = out.stage(dst)?;
        std::fs::copy(src, &staged).with_context(|| format!("{}: cannot copy to {}", src.display(), dst.display()))?;
        log::info!("submitting route `{route}` ({})", src.display());
        chosen = Some(route);
    }
    for (i, e) in entries.iter().enumerate() {
        let v = e.get(args.metric).map_or("undefined".into(), |v| format!("{v:.6}"));
        println!("{:>2}. {:<24} {:<9} {} {v}{}", i + 1, e.route, e.kind.name(), args.metric, if Some(&e.route) == chosen.as_ref() { "  <- submitted" } else { "" });
    }
    if let Some(p) = &args.out_table {
        write_table(&out.stage(p)?, &entries, args.metric)?;
    }
    if let Some(p) = &args.plot {
        if entries.is_empty() {
            bail!("--plot needs at least one --score");
        }
        let n_routes = entries.iter().filter(|e| e.kind != Kind::Reference).count();
        plot(&out.stage(p)?, &entries, chosen.as_deref(), args.metric, &format!("Leaderboard: {n_routes} routes and baselines, ranked by {}", args.metric))?;
    }
    if let Some(p) = &args.values_plot {
        let tables = pairs(&args.values, "values")?
            .into_iter()
            .map(|(name, path)| Ok((name, perturbgen::io::de_table::DeTable::read(&path)?)))
            .collect::<Result<Vec<_>>>()?;
        plot_value_histograms(&out.stage(p)?, &tables, "Signed −log10 p: truth and predictions")?;
    }
    out.commit()?;
    Ok(())
}
