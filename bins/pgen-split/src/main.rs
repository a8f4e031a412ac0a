//! pgen-split: chooses the target pairs (evaluation hold-out or an id_map) and the
//! validation cells.
use anyhow::{bail, Result};
use clap::Parser;
use perturbgen::atomic::OutputSet;
use perturbgen::cells::Cells;
use perturbgen::io::id_map::IdMap;
use perturbgen::split::{split, TargetSpec};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(version, about = "Choose target pairs (hold-out or id_map) and validation cells")]
struct Args {
    #[arg(long)]
    counts: PathBuf,
    #[arg(long)]
    obs: PathBuf,
    /// Hold out this pair, written `cell type|compound` (repeat).
    #[arg(long = "holdout-pair")]
    holdout_pairs: Vec<String>,
    /// Hold out this many compounds, drawn among those measured in all --holdout-cell-type.
    #[arg(long)]
    holdout_draw: Option<usize>,
    #[arg(long = "holdout-cell-type")]
    holdout_cell_types: Vec<String>,
    /// Targets from an id_map instead (submission mode): no cells are held out.
    #[arg(long)]
    id_map: Option<PathBuf>,
    #[arg(long, default_value_t = 0.032)]
    validation_fraction: f64,
    /// Keep every cell whose cell type or compound occurs in the targets out of validation.
    #[arg(long)]
    keep_target_relevant: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value = "Dimethyl Sulfoxide")]
    negative_control: String,
    #[arg(long)]
    out_train_counts: PathBuf,
    #[arg(long)]
    out_train_obs: PathBuf,
    #[arg(long)]
    out_holdout_counts: PathBuf,
    #[arg(long)]
    out_holdout_obs: PathBuf,
    /// The target pairs (id_map layout).
    #[arg(long)]
    out_targets: PathBuf,
    /// obs_ids of the validation cells, one per line.
    #[arg(long)]
    out_validation: PathBuf,
    #[command(flatten)]
    common: perturbgen_cli::CommonArgs,
}

fn main() {
    let args: Args = perturbgen_cli::parse_args();
    perturbgen_cli::main(args.common.verbose, || run(args));
}

fn spec(args: &Args) -> Result<TargetSpec> {
    let modes = [!args.holdout_pairs.is_empty(), args.holdout_draw.is_some(), args.id_map.is_some()];
    if modes.iter().filter(|&&m| m).count() != 1 {
        bail!("give exactly one of --holdout-pair, --holdout-draw or --id-map");
    }
    if let Some(p) = &args.id_map {
        return Ok(TargetSpec::IdMap(IdMap::read(p)?));
    }
    if let Some(n) = args.holdout_draw {
        return Ok(TargetSpec::Drawn { n_compounds: n, cell_types: args.holdout_cell_types.clone(), seed: args.seed });
    }
    let pairs = args
        .holdout_pairs
        .iter()
        .map(|p| match p.split_once('|') {
            Some((t, c)) => Ok((t.to_string(), c.to_string())),
            None => bail!("--holdout-pair `{p}`: expected `cell type|compound`"),
        })
        .collect::<Result<_>>()?;
    Ok(TargetSpec::Listed(pairs))
}

fn run(args: Args) -> Result<()> {
    perturbgen::threads::with_threads(args.common.threads(), || -> Result<()> {
        let spec = spec(&args)?;
        let cells = Cells::read(&args.counts, &args.obs)?;
        let s = split(&cells.obs, &spec, &args.negative_control, args.validation_fraction, args.keep_target_relevant, args.seed)?;
        log::info!(
            "{} targets; {} training cells ({} for validation), {} held out",
            s.targets.rows.len(), s.train_rows.len(), s.validation_ids.len(), s.holdout_rows.len()
        );
        let mut out = OutputSet::new();
        cells.take(&s.train_rows).write(&out.stage(&args.out_train_counts)?, &out.stage(&args.out_train_obs)?)?;
        cells.take(&s.holdout_rows).write(&out.stage(&args.out_holdout_counts)?, &out.stage(&args.out_holdout_obs)?)?;
        s.targets.write(&out.stage(&args.out_targets)?)?;
        perturbgen::io::genes::write_gene_list(&out.stage(&args.out_validation)?, &s.validation_ids)?;
        out.commit()?;
        Ok(())
    })?
}
