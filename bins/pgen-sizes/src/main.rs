//! pgen-sizes: the size forests of the generative route — how many cells each target group
//! (target cell type × plate × well of its compound) would have, and their median scale.
use anyhow::Result;
use clap::Parser;
use perturbgen::atomic::OutputSet;
use perturbgen::cells::Cells;
use perturbgen::io::id_map::IdMap;
use perturbgen::io::sizes::SizeTable;
use perturbgen_regress::sizes::controls::ControlSizes;
use perturbgen_regress::sizes::{baseline_matches, fit_sizes, n_work_units, plot_fit, target_groups, SizeMode, SizesParams};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(version, about = "Size forests: cells per target group and their median per-cell scale")]
struct Args {
    /// Training cells (counts.parquet + obs.parquet layout).
    #[arg(long)]
    counts: PathBuf,
    #[arg(long)]
    obs: PathBuf,
    /// Target pairs (id_map layout).
    #[arg(long)]
    targets: PathBuf,
    /// Compounds whose wells are not compound wells (repeat): the negative and positive controls.
    #[arg(long = "exclude-compound")]
    exclude: Vec<String>,
    /// The negative control: every cell type's wells of it are the baselines of
    /// `sizes.relative_to_controls` (required then), and the target cell types' ones are added
    /// to the table as observed rows (for `generate.reference: generated`, which generates them too).
    #[arg(long)]
    negative_control: Option<String>,
    /// The predicted target groups (CSV: group metadata, n_cells, scale).
    #[arg(long)]
    out: PathBuf,
    /// Observed vs predicted on the held-out training groups (PNG, R² in the titles).
    #[arg(long)]
    plot: PathBuf,
    /// Size-forest parameters: `sizes` section.
    #[command(flatten)]
    params: perturbgen_cli::ConfigArgs,
    #[command(flatten)]
    common: perturbgen_cli::CommonArgs,
}

fn main() {
    let args: Args = perturbgen_cli::parse_args();
    perturbgen_cli::main(args.common.verbose, || run(args));
}

fn run(args: Args) -> Result<()> {
    let config = args.params.checked::<SizesParams>()?;
    let mode = SizeMode::of(&config.params);
    let targets = IdMap::read(&args.targets)?;
    let cells = Cells::read(&args.counts, &args.obs)?;
    let measured = SizeTable::observed(&cells, config.params.scale, &args.exclude);
    let groups = target_groups(&measured, &targets, &args.targets)?;
    log::info!("{} measured compound wells; {} target groups for {} target pairs", measured.rows.len(), groups.len(), targets.rows.len());
    let every_group = SizeTable::observed(&cells, config.params.scale, &[]);
    let controls = args.negative_control.as_deref().map(|nc| ControlSizes::new(&every_group, nc));
    match (&controls, args.negative_control.as_deref()) {
        (Some(c), Some(nc)) => {
            log::info!("{} `{nc}` wells: the control baselines", c.n_wells());
            if mode == SizeMode::RelativeToControls {
                c.require_for(&targets, &args.targets, nc)?;
            }
        }
        _ if mode == SizeMode::RelativeToControls => anyhow::bail!("sizes.relative_to_controls: true needs the negative control's wells: pass --negative-control"),
        _ => {}
    }
    let bar = perturbgen::progress::bar(n_work_units(&config, controls.is_some()) as u64, "size forests");
    let fit = perturbgen::threads::with_threads(args.common.threads(), || fit_sizes(&measured, controls.as_ref(), &groups, &config, &|| bar.inc(1)))??;
    bar.finish_and_clear();
    for c in &fit.checks {
        let used = if c.mode == fit.mode { " (used)" } else { "" };
        log::info!("held-out R² {}{used}: cells {:.3}, scale {:.3} ({} held-out of {} training groups)", c.mode.name(), c.r2_cells, c.r2_scale, fit.heldout.len(), fit.n_train_groups);
    }
    if mode == SizeMode::RelativeToControls {
        log::info!("{} of {} training groups have a control baseline; target baselines from {:?}", fit.n_train_groups_with_controls, fit.n_train_groups, baseline_matches(&fit));
        for (r, b) in fit.predicted.rows.iter().zip(&fit.baselines) {
            log::debug!("{} {} {}: control {:.1} cells, scale {:.1} ({:?}) → {} cells, scale {:.1}", r.key.cell_type, r.key.plate_name, r.key.well, b.n_cells, b.scale, b.matched, r.n_cells, r.scale);
        }
    }
    let mut table = fit.predicted.clone();
    if let Some(nc) = &args.negative_control {
        let target_cts: std::collections::BTreeSet<&str> = targets.rows.iter().map(|r| r.cell_type.as_str()).collect();
        let rows: Vec<_> = every_group.rows.into_iter().filter(|r| r.key.sm_name == *nc && target_cts.contains(r.key.cell_type.as_str())).collect();
        log::info!("{} measured `{nc}` wells of the target cell types added (observed)", rows.len());
        table.rows.extend(rows);
    }
    let mut out = OutputSet::new();
    table.write(&out.stage(&args.out)?)?;
    plot_fit(&out.stage(&args.plot)?, &fit, config.params.scale)?;
    out.commit()?;
    Ok(())
}
