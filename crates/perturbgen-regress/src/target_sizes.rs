//! The size table of a run's targets, as one call: what `pgen-sizes` writes for the workflow's
//! targets and `pgen-predict` builds for new ones (the same code, so the same bytes). The
//! measured compound wells of the training cells, the target groups, the size forests'
//! predictions for them (relative to the cell types' control wells with
//! `sizes.relative_to_controls`) and, with a negative control, the target cell types' measured
//! control wells (observed rows, for `generate.reference: generated`).
use crate::error::{Error, Result};
use crate::sizes::controls::ControlSizes;
use crate::sizes::{baseline_matches, fit_sizes, n_work_units, target_groups, SizeMode, SizesConfig, SizesFit};
use perturbgen::cells::Cells;
use perturbgen::io::id_map::IdMap;
use perturbgen::io::sizes::SizeTable;
use std::collections::BTreeSet;
use std::path::Path;

/// What [`target_sizes`] returns: the table to generate from and the forests' held-out checks.
#[derive(Debug, Clone)]
pub struct TargetSizes {
    pub table: SizeTable,
    pub fit: SizesFit,
}

/// Fits the size forests on the measured groups of `cells` (leaving out the wells of the
/// `exclude`d compounds) and predicts every group of `targets` (read from `targets_path`, named
/// in errors), on `threads` threads, with a progress bar.
pub fn target_sizes(cells: &Cells, targets: &IdMap, targets_path: &Path, exclude: &[String], negative_control: Option<&str>, config: &SizesConfig, threads: usize) -> Result<TargetSizes> {
    let mode = SizeMode::of(&config.params);
    let mut measured = SizeTable::observed(cells, config.params.scale, exclude);
    // The target pairs' own groups, where the cells have them (the generative inner hold-out's
    // pairs are measured), leave the forests' training: their sizes are predicted, not looked up.
    let pairs: BTreeSet<(&str, &str)> = targets.rows.iter().map(|r| (r.cell_type.as_str(), r.sm_name.as_str())).collect();
    let before = measured.rows.len();
    measured.rows.retain(|r| !pairs.contains(&(r.key.cell_type.as_str(), r.key.sm_name.as_str())));
    if measured.rows.len() < before {
        log::info!("{} measured groups of the target pairs left out of the size forests", before - measured.rows.len());
    }
    let groups = target_groups(&measured, targets, targets_path)?;
    log::info!("{} measured compound wells; {} target groups for {} target pairs", measured.rows.len(), groups.len(), targets.rows.len());
    let every_group = SizeTable::observed(cells, config.params.scale, &[]);
    let controls = negative_control.map(|nc| ControlSizes::new(&every_group, nc));
    match (&controls, negative_control) {
        (Some(c), Some(nc)) => {
            log::info!("{} `{nc}` wells: the control baselines", c.n_wells());
            if mode == SizeMode::RelativeToControls {
                c.require_for(targets, targets_path, nc)?;
            }
        }
        _ if mode == SizeMode::RelativeToControls => {
            return Err(Error::param("sizes.relative_to_controls", "true needs the negative control's wells: pass --negative-control"));
        }
        _ => {}
    }
    let bar = perturbgen::progress::bar(n_work_units(config, controls.is_some()) as u64, "size forests");
    let fit = perturbgen::threads::with_threads(threads, || fit_sizes(&measured, controls.as_ref(), &groups, config, &|| bar.inc(1)))??;
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
    if let Some(nc) = negative_control {
        let target_cts: BTreeSet<&str> = targets.rows.iter().map(|r| r.cell_type.as_str()).collect();
        let rows: Vec<_> = every_group.rows.into_iter().filter(|r| r.key.sm_name == *nc && target_cts.contains(r.key.cell_type.as_str())).collect();
        log::info!("{} measured `{nc}` wells of the target cell types added (observed)", rows.len());
        table.rows.extend(rows);
    }
    Ok(TargetSizes { table, fit })
}
