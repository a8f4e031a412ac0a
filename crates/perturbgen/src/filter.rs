//! `pgen-filter`: drops positive-control cells and compounds measured in too few cells, and
//! says what it removed and why (SPEC §4: "remove positive-control cells; removing compounds
//! with few cells might help").
use crate::error::Error;
use crate::io::obs::ObsTable;
use crate::params::de::DMSO;
use crate::params::filter::FilterParams;
use serde::Serialize;

/// What the filter runs with: the checked `filter` section and the negative control (`de`).
#[derive(Debug, Clone)]
pub struct FilterConfig {
    /// Compounds whose cells are dropped.
    pub drop_compounds: Vec<String>,
    /// Compounds with fewer cells than this (over all cell types) are dropped.
    pub min_cells: usize,
    /// Never dropped by `min_cells` (the reference of every contrast).
    pub negative_control: String,
}

impl FilterConfig {
    pub fn new(params: FilterParams, negative_control: String) -> Self {
        Self { drop_compounds: params.drop_compounds, min_cells: params.min_cells, negative_control }
    }
}

/// The sections' defaults.
impl Default for FilterConfig {
    fn default() -> Self {
        Self::new(FilterParams::default(), DMSO.to_string())
    }
}

/// One line of the "what was removed" table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Removal {
    pub sm_name: String,
    pub reason: String,
    pub cells: usize,
}

/// The rows to keep (in order) and what was removed. Refused (they would silently leave
/// nothing to train on, or not do what was asked): dropping the negative control, naming a
/// compound the cells do not have, a `min_cells` that drops every compound.
pub fn filter_cells(obs: &ObsTable, config: &FilterConfig) -> crate::Result<(Vec<usize>, Vec<Removal>)> {
    let levels = obs.sm_name.levels();
    let mut per_compound = vec![0usize; levels.len()];
    for &c in obs.sm_name.codes() {
        per_compound[c as usize] += 1;
    }
    let present = |name: &str| levels.iter().zip(&per_compound).any(|(l, &n)| l == name && n > 0);
    for name in &config.drop_compounds {
        if *name == config.negative_control {
            return Err(Error::param("filter.drop_compounds", format!("`{name}` is the negative control, which every contrast needs")));
        }
        if !present(name) {
            return Err(Error::param(
                "filter.drop_compounds",
                format!("`{name}` is not a compound of these cells (a study without positive controls: drop_compounds: [])"),
            ));
        }
    }
    let regular = |c: usize| per_compound[c] > 0 && levels[c] != config.negative_control && !config.drop_compounds.contains(&levels[c]);
    if let Some(largest) = (0..levels.len()).filter(|&c| regular(c)).map(|c| per_compound[c]).max() {
        if largest < config.min_cells {
            return Err(Error::param(
                "filter.min_cells",
                format!("{} drops every compound (the largest has {largest} cells): only the negative control would be left", config.min_cells),
            ));
        }
    }
    let mut drop = vec![None; levels.len()];
    for (c, name) in levels.iter().enumerate() {
        if per_compound[c] == 0 {
            continue;
        }
        if config.drop_compounds.iter().any(|d| d == name) {
            drop[c] = Some("listed as positive control".to_string());
        } else if per_compound[c] < config.min_cells && *name != config.negative_control {
            drop[c] = Some(format!("fewer than min_cells = {} cells", config.min_cells));
        }
    }
    let keep = (0..obs.len()).filter(|&i| drop[obs.sm_name.code(i) as usize].is_none()).collect();
    let mut removed: Vec<Removal> = drop
        .iter()
        .enumerate()
        .filter_map(|(c, r)| r.as_ref().map(|reason| Removal { sm_name: levels[c].clone(), reason: reason.clone(), cells: per_compound[c] }))
        .collect();
    removed.sort_by(|a, b| a.sm_name.cmp(&b.sm_name));
    Ok((keep, removed))
}

/// Writes the removals as CSV (sm_name, reason, cells).
/// `keep` without the cells of the (cell type, compound) `pairs`, and one [`Removal`] per pair
/// (compound `cell type|compound`, reason "inner hold-out pair"), in the pairs' order.
pub fn drop_pairs(obs: &ObsTable, keep: Vec<usize>, pairs: &crate::io::id_map::IdMap) -> (Vec<usize>, Vec<Removal>) {
    let index: std::collections::HashMap<(&str, &str), usize> = pairs.rows.iter().enumerate().map(|(i, r)| ((r.cell_type.as_str(), r.sm_name.as_str()), i)).collect();
    let mut dropped = vec![0usize; pairs.rows.len()];
    let kept = keep
        .into_iter()
        .filter(|&i| match index.get(&(obs.cell_type.get(i), obs.sm_name.get(i))) {
            Some(&p) => {
                dropped[p] += 1;
                false
            }
            None => true,
        })
        .collect();
    let removals = pairs
        .rows
        .iter()
        .zip(dropped)
        .map(|(r, cells)| Removal { sm_name: format!("{}|{}", r.cell_type, r.sm_name), reason: "inner hold-out pair".into(), cells })
        .collect();
    (kept, removals)
}

pub fn write_removals(path: &std::path::Path, removed: &[Removal]) -> crate::Result<()> {
    crate::atomic::write_atomic(path, |w| {
        let mut out = csv::Writer::from_writer(w);
        out.write_record(["sm_name", "reason", "cells"])?;
        for r in removed {
            out.write_record([r.sm_name.as_str(), &r.reason, &r.cells.to_string()])?;
        }
        out.flush()?;
        Ok(())
    })
}
