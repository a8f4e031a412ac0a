//! pgen-split: chooses the target pairs (evaluation hold-out or an id_map) and the
//! validation cells.
use anyhow::{bail, Result};
use clap::Parser;
use perturbgen::atomic::OutputSet;
use perturbgen::cells::Cells;
use perturbgen::io::id_map::IdMap;
use perturbgen::split::{split, TargetSpec};
use perturbgen::params::de::DeParams;
use perturbgen::params::split::{Holdout, SplitConfig, SplitParams};
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(version, about = "Choose target pairs (hold-out or id_map) and validation cells")]
struct Args {
    #[arg(long)]
    counts: PathBuf,
    #[arg(long)]
    obs: PathBuf,
    /// The id_map whose pairs are the targets (split mode id_map).
    #[arg(long)]
    id_map: Option<PathBuf>,
    /// The `split` section (mode, holdout, seed, validation_fraction, keep_target_relevant) is
    /// this stage's own; it also reads `de` (the negative control).
    #[command(flatten)]
    params: perturbgen_cli::ConfigArgs,
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

fn spec(config: &SplitConfig, id_map: Option<&Path>) -> Result<TargetSpec> {
    match (&config.holdout, id_map) {
        (Holdout::IdMap, Some(p)) => {
            let ids = IdMap::read(p)?;
            if ids.rows.is_empty() {
                bail!("{}: no rows: an id_map lists the (cell type, compound) pairs to predict (id,cell_type,sm_name)", p.display());
            }
            Ok(TargetSpec::IdMap(ids))
        }
        (Holdout::IdMap, None) => bail!("split.mode id_map: give the id_map (--id-map FILE), or set split.mode holdout"),
        (_, Some(p)) => bail!("--id-map {}: split.mode is holdout (the targets are held-out pairs, not an id_map's)", p.display()),
        (Holdout::Listed(pairs), None) => Ok(TargetSpec::Listed(pairs.clone())),
        (Holdout::Drawn { n_compounds, cell_types }, None) => Ok(TargetSpec::Drawn { n_compounds: *n_compounds, cell_types: cell_types.clone(), seed: config.seed }),
    }
}

fn run(args: Args) -> Result<()> {
    perturbgen::threads::with_threads(args.common.threads(), || -> Result<()> {
        let config = args.params.checked::<SplitParams>()?;
        let de = args.params.section::<DeParams>()?;
        let spec = spec(&config, args.id_map.as_deref())?;
        let cells = Cells::read(&args.counts, &args.obs)?;
        let s = split(&cells.obs, &spec, &de.negative_control, config.validation_fraction, config.keep_target_relevant, config.seed)?;
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
