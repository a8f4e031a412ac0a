//! pgen-blend: weighted mean of prediction tables. `split` draws an inner hold-out from the
//! training pairs (for fitting weights honestly); `apply` blends with given weights, or with
//! weights fitted on the inner hold-out's predictions, and reports them.
use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use perturbgen::atomic::OutputSet;
use perturbgen::io::de_table::DeTable;
use perturbgen::blend::{blend, combine_runs, fit_weights, inner_holdout, plot_replicates, replicate_curve, write_replicates, write_weights, Combine, Input};
use perturbgen::params::blend::BlendParams;
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(version, about = "Blend prediction tables (weights given or fitted on an inner hold-out)")]
struct Args {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    common: perturbgen_cli::CommonArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Draw an inner hold-out from the training DE table: per cell type, `draw` measured
    /// compounds that are also measured elsewhere.
    Split {
        #[arg(long)]
        de_train: PathBuf,
        /// The real targets (id_map layout), for their cell types (when blend.inner.cell_types is []).
        #[arg(long)]
        targets: Option<PathBuf>,
        /// The `blend` section (its `inner` draw, seed and cell types) is this stage's own.
        #[command(flatten)]
        params: perturbgen_cli::ConfigArgs,
        /// Inner training table (de_train without the drawn pairs).
        #[arg(long)]
        out_train: PathBuf,
        /// Inner targets (id_map layout).
        #[arg(long)]
        out_targets: PathBuf,
        /// Inner truth (the drawn pairs' DE values).
        #[arg(long)]
        out_truth: PathBuf,
    },
    /// Blend ROUTE=PATH prediction tables.
    Apply {
        /// A prediction table to blend, ROUTE=PATH (repeatable; output rows follow the first).
        #[arg(long = "prediction", required = true)]
        predictions: Vec<String>,
        /// Weights in --prediction order (comma-separated, non-negative, sum 1).
        #[arg(long, value_delimiter = ',')]
        weights: Vec<f64>,
        /// Fit the weights: the inner hold-out's truth ...
        #[arg(long, requires = "fit_predictions")]
        fit_truth: Option<PathBuf>,
        /// ... and each route's prediction for it, ROUTE=PATH, same routes as --prediction.
        #[arg(long = "fit-prediction")]
        fit_predictions: Vec<String>,
        /// The blend of the --fit-prediction tables with the weights used (given or fitted): the
        /// blend's own inner-hold-out run (its clip is chosen on it).
        #[arg(long, requires = "fit_predictions")]
        out_inner: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        /// The weights used (CSV route, weight, inner_mrrmse).
        #[arg(long)]
        out_weights: PathBuf,
    },
    /// Combine replicate runs of one route (RUN=PATH, repeatable) entry by entry; with --truth,
    /// also report how the MRRMSE and the between-run spread change as runs are added.
    Combine {
        #[arg(long = "prediction", required = true)]
        predictions: Vec<String>,
        #[arg(long, value_enum, default_value = "mean")]
        method: CombineMethod,
        #[arg(long)]
        out: PathBuf,
        /// The targets' true DE, for the replicate report.
        #[arg(long, requires = "out_table")]
        truth: Option<PathBuf>,
        /// Replicate report (CSV: n_runs, mrrmse, run_sd, mean_se).
        #[arg(long)]
        out_table: Option<PathBuf>,
        /// Replicate report as a PNG.
        #[arg(long, requires = "out_table")]
        plot: Option<PathBuf>,
        #[arg(long, default_value = "replicate runs")]
        title: String,
    },
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
enum CombineMethod {
    Mean,
    Median,
}

fn main() {
    let args: Args = perturbgen_cli::parse_args();
    perturbgen_cli::main(args.common.verbose, || run(args));
}

fn read_inputs(items: &[String], flag: &str) -> Result<Vec<Input>> {
    let mut out: Vec<Input> = Vec::new();
    for s in items {
        let Some((route, path)) = s.split_once('=').filter(|(r, p)| !r.is_empty() && !p.is_empty()) else {
            bail!("--{flag} `{s}`: expected ROUTE=PATH");
        };
        if out.iter().any(|i| i.route == route) {
            bail!("--{flag}: route `{route}` given twice");
        }
        let path = PathBuf::from(path);
        out.push(Input { route: route.to_string(), table: DeTable::read(&path)?, path });
    }
    Ok(out)
}

fn run(args: Args) -> Result<()> {
    match args.command {
        Command::Split { de_train, targets, params, out_train, out_targets, out_truth } => {
            let inner = params.checked::<BlendParams>()?.inner;
            let (draw, seed) = (inner.draw, inner.seed);
            let table = DeTable::read(&de_train)?;
            let mut cts = inner.cell_types;
            if cts.is_empty() {
                let Some(t) = &targets else { bail!("blend.inner.cell_types is []: give the targets (--targets), whose cell types are drawn from") };
                let ids = perturbgen::io::id_map::IdMap::read(t)?;
                cts = ids.rows.iter().map(|r| r.cell_type.clone()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
            }
            let (train, inner_targets, truth) = inner_holdout(&table, &cts, draw, seed, &de_train)?;
            log::info!("inner hold-out: {} pairs of {:?}; {} training rows left", truth.n_rows(), cts, train.n_rows());
            let mut out = OutputSet::new();
            train.write(&out.stage(&out_train)?)?;
            inner_targets.write(&out.stage(&out_targets)?)?;
            truth.write(&out.stage(&out_truth)?)?;
            out.commit()?;
        }
        Command::Apply { predictions, weights, fit_truth, fit_predictions, out_inner, out, out_weights } => {
            let inputs = read_inputs(&predictions, "prediction")?;
            let routes: Vec<String> = inputs.iter().map(|i| i.route.clone()).collect();
            let fit_inputs = read_inputs(&fit_predictions, "fit-prediction")?;
            let fit_routes: Vec<String> = fit_inputs.iter().map(|i| i.route.clone()).collect();
            if !fit_inputs.is_empty() && fit_routes != routes {
                bail!("--fit-prediction routes {fit_routes:?} must be the --prediction routes {routes:?}, in the same order");
            }
            let (weights, fitted) = match (&fit_truth, weights.is_empty()) {
                (Some(_), false) => bail!("give --weights or --fit-truth, not both"),
                (None, true) => bail!("give --weights or --fit-truth with --fit-prediction"),
                (None, false) => (weights, None),
                (Some(truth_path), true) => {
                    let truth = DeTable::read(truth_path)?;
                    let (w, f) = fit_weights(&truth, &fit_inputs, truth_path)?;
                    let singles: Vec<f64> = (0..routes.len())
                        .map(|k| {
                            let mut e = vec![0.0; routes.len()];
                            e[k] = 1.0;
                            single(&truth, &fit_inputs, &e, truth_path)
                        })
                        .collect::<Result<_>>()?;
                    (w, Some((f, singles)))
                }
            };
            let blended = blend(&inputs, &weights)?;
            for (r, w) in routes.iter().zip(&weights) {
                log::info!("weight {r}: {w:.4}");
            }
            if let Some((f, singles)) = &fitted {
                log::info!("inner hold-out MRRMSE: blend {f:.4}; single routes {singles:?}");
            }
            let mut set = OutputSet::new();
            blended.write(&set.stage(&out)?)?;
            if let Some(p) = &out_inner {
                blend(&fit_inputs, &weights)?.write(&set.stage(p)?)?;
            }
            write_weights(&set.stage(&out_weights)?, &routes, &weights, fitted.as_ref().map(|(f, s)| (*f, s.as_slice())))?;
            set.commit()?;
        }
        Command::Combine { predictions, method, out, truth, out_table, plot, title } => {
            let runs = read_inputs(&predictions, "prediction")?;
            let how = match method {
                CombineMethod::Mean => Combine::Mean,
                CombineMethod::Median => Combine::Median,
            };
            let combined = combine_runs(&runs, how)?;
            let mut set = OutputSet::new();
            combined.write(&set.stage(&out)?)?;
            if let Some(table_path) = &out_table {
                let truth_table = truth.as_ref().map(|p| DeTable::read(p)).transpose()?;
                let rows = replicate_curve(&runs, how, truth_table.as_ref().zip(truth.as_deref()))?;
                for r in &rows {
                    log::info!("{} run(s): MRRMSE {:?}, between-run SD {:.4}, SD/√n {:.4}", r.n_runs, r.mrrmse, r.run_sd, r.mean_se);
                }
                write_replicates(&set.stage(table_path)?, &rows)?;
                if let Some(p) = &plot {
                    plot_replicates(&set.stage(p)?, &rows, &title)?;
                }
            }
            set.commit()?;
        }
    }
    Ok(())
}

/// MRRMSE on the inner hold-out of the blend with weights `w`.
fn single(truth: &DeTable, inputs: &[Input], w: &[f64], truth_path: &Path) -> Result<f64> {
    let b = blend(inputs, w)?;
    Ok(perturbgen::score::score(truth, &b, truth_path, &inputs[0].path)?.mrrmse)
}
