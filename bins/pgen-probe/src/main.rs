//! pgen-probe: does a trained model carry a compound's effect to a cell type it never saw
//! treated? Per target pair, the Pearson correlation with the truth of the model's predicted
//! log fold change (the target cell type's own control cells, and prior draws, decoded with the
//! target's covariates against their control well's), next to the mean DE of the compound in
//! the other cell types (perturbgen_models::probe).
use anyhow::Result;
use clap::Parser;
use perturbgen::atomic::OutputSet;
use perturbgen::io::de_stats::DeStats;
use perturbgen::io::sizes::SizeTable;
use perturbgen_models::counterfactual::control_pools;
use perturbgen_models::loglik::LoadedModel;
use perturbgen_models::probe::{plot_probe, probe, PROBE_COLUMNS};
use std::fmt::Write as _;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(version, about = "The transfer probe: a model's predicted log fold change for the target pairs against the truth, next to the other cell types' mean")]
struct Args {
    /// Model folder (pgen-train output).
    #[arg(long)]
    model: PathBuf,
    /// The cells the model was trained and validated on (counts, long table) ...
    #[arg(long)]
    cells_counts: PathBuf,
    /// ... and their obs table.
    #[arg(long)]
    cells_obs: PathBuf,
    /// The size table (pgen-sizes with --negative-control: target groups and the target cell
    /// types' control wells).
    #[arg(long)]
    sizes: PathBuf,
    /// The targets' truth as AnnData (pgen-merge-de --out-h5ad: X and layer logFC).
    #[arg(long)]
    truth: PathBuf,
    /// de_train as AnnData: the other cell types' DE of each compound.
    #[arg(long)]
    train: PathBuf,
    /// The negative control compound (de.negative_control).
    #[arg(long)]
    negative_control: String,
    /// Seed of the control cells' order and the prior draws.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Compute device: cpu, or cuda[:N] with a `--features cuda` build.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// The probe table (CSV: one row per target pair, then `ALL,MEAN`).
    #[arg(long)]
    out: PathBuf,
    /// Also draw it (PNG: per pair, the correlations as bars).
    #[arg(long)]
    plot: Option<PathBuf>,
    #[command(flatten)]
    common: perturbgen_cli::CommonArgs,
}

fn main() {
    let args: Args = perturbgen_cli::parse_args();
    perturbgen_models::limit_threads(args.common.threads());
    perturbgen_cli::main(args.common.verbose, || run(args));
}

fn run(args: Args) -> Result<()> {
    let threads = args.common.threads();
    let sizes = SizeTable::read(&args.sizes)?;
    let (truth, train) = (DeStats::read_h5ad(&args.truth)?, DeStats::read_h5ad(&args.train)?);
    let device = perturbgen_models::device(&args.device)?;
    let model = LoadedModel::load(&args.model, &device)?;
    let cells = perturbgen::cells::Cells::read(&args.cells_counts, &args.cells_obs)?;
    let rows = perturbgen::threads::with_threads(threads, || -> Result<_> {
        let pools = control_pools(&model, cells, &sizes, &args.negative_control, args.seed, (&args.cells_counts, &args.cells_obs, &args.sizes))?;
        Ok(probe(&model, &sizes, &pools, &truth, &train, args.seed, &args.sizes)?)
    })??;
    if rows.is_empty() {
        anyhow::bail!("{}: no target pair has a truth row in {}", args.sizes.display(), args.truth.display());
    }
    let mut text = format!("cell_type,sm_name,control_cells,{}\n", PROBE_COLUMNS.join(","));
    let mut mean = [0f64; PROBE_COLUMNS.len()];
    for row in &rows {
        let quote = |s: &str| if s.contains([',', '"']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() };
        write!(text, "{},{},{}", quote(&row.cell_type), quote(&row.sm_name), row.control_cells)?;
        for (m, v) in mean.iter_mut().zip(row.values()) {
            write!(text, ",{v}")?;
            *m += v / rows.len() as f64;
        }
        text.push('\n');
        log::info!(
            "{} / {}: model (own controls) {:.3}, model (prior) {:.3}, other cell types' mean {:.3} (Pearson with the truth's logFC)",
            row.cell_type,
            row.sm_name,
            row.logfc_model_controls,
            row.logfc_model_prior,
            row.logfc_mean_other
        );
    }
    write!(text, "ALL,MEAN,{}", rows.iter().map(|r| r.control_cells).sum::<usize>())?;
    for m in mean {
        write!(text, ",{m}")?;
    }
    text.push('\n');
    let mut out = OutputSet::new();
    std::fs::write(out.stage(&args.out)?, text)?;
    if let Some(path) = &args.plot {
        plot_probe(&out.stage(path)?, &rows, &model.meta.config.model.name())?;
    }
    out.commit()?;
    Ok(())
}
