//! The size table of a run's targets, as one call: what `pgen-sizes` writes for the workflow's
//! targets and `pgen-predict` builds for new ones (the same code, so the same bytes). The
//! measured compound wells of the training cells, the target groups, the size forests'
//! predictions for them and, with a negative control, the target cell types' measured control
//! wells (observed rows, for `generate.reference: generated`).
use crate::error::Result;
use crate::sizes::{fit_sizes, n_work_units, target_groups, SizesConfig, SizesFit};
use perturbgen::cells::Cells;
use perturbgen::io::id_map::IdMap;
use perturbgen::io::sizes::SizeTable;
use std::collections::BTreeSet;
use std::path::Path;

/// What [`target_sizes`] returns: the table to generate from and the forests' held-out check.
#[derive(Debug, Clone)]
pub struct TargetSizes {
    pub table: SizeTable,
    pub fit: SizesFit,
}

/// Fits the size forests on the measured groups of `cells` (leaving out the wells of the
/// `exclude`d compounds) and predicts every group of `targets` (read from `targets_path`, named
/// in errors), on `threads` threads, with a progress bar.
pub fn target_sizes(cells: &Cells, targets: &IdMap, targets_path: &Path, exclude: &[String], negative_control: Option<&str>, config: &SizesConfig, threads: usize) -> Result<TargetSizes> {
    let measured = SizeTable::observed(cells, config.params.scale, exclude);
    let groups = target_groups(&measured, targets, targets_path)?;
    log::info!("{} measured compound wells; {} target groups for {} target pairs", measured.rows.len(), groups.len(), targets.rows.len());
    let bar = perturbgen::progress::bar(n_work_units(config) as u64, "size forests");
    let fit = perturbgen::threads::with_threads(threads, || fit_sizes(&measured, &groups, config, &|| bar.inc(1)))??;
    bar.finish_and_clear();
    log::info!("held-out R²: cells {:.3}, scale {:.3} ({} training groups)", fit.r2_cells, fit.r2_scale, fit.n_train_groups);
    let mut table = fit.predicted.clone();
    if let Some(nc) = negative_control {
        let target_cts: BTreeSet<&str> = targets.rows.iter().map(|r| r.cell_type.as_str()).collect();
        let controls = SizeTable::observed(cells, config.params.scale, &[]);
        let rows: Vec<_> = controls.rows.into_iter().filter(|r| r.key.sm_name == *nc && target_cts.contains(r.key.cell_type.as_str())).collect();
        log::info!("{} measured `{nc}` wells of the target cell types added (observed)", rows.len());
        table.rows.extend(rows);
    }
    Ok(TargetSizes { table, fit })
}
