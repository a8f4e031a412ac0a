//! `pgen-split`: decides the target pairs and the cells the models may train on.
//!
//! * Evaluation hold-out (dev mode): (cell type, compound) pairs listed, or drawn (N compounds
//!   in given cell types, seeded), leave the training cells; their cells become the truth.
//! * Targets from an id_map (submission mode, or the simulator's id_map whose truth cells it
//!   kept aside): the training cells stay as they are.
//! * Validation: a seeded random fraction of the training cells for model training (SPEC §4:
//!   3.2 %), optionally keeping every cell whose cell type or compound occurs in the targets.
use crate::error::{Error, Result};
use crate::io::id_map::{IdMap, IdMapRow};
use crate::io::obs::ObsTable;
use crate::simulate::layout::{DMSO, POSITIVE_CONTROLS};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeSet, HashSet};

#[derive(Debug, Clone)]
pub enum TargetSpec {
    /// These (cell type, compound) pairs.
    Listed(Vec<(String, String)>),
    /// `n_compounds` compounds drawn among those measured in all of `cell_types`.
    Drawn { n_compounds: usize, cell_types: Vec<String>, seed: u64 },
    /// The pairs of an id_map (no cells are held out).
    IdMap(IdMap),
}

#[derive(Debug, Clone)]
pub struct SplitResult {
    pub targets: IdMap,
    /// Rows of the input that stay for training.
    pub train_rows: Vec<usize>,
    /// Rows held out as truth (empty for id_map targets).
    pub holdout_rows: Vec<usize>,
    /// obs_ids of training cells set aside for validation.
    pub validation_ids: Vec<String>,
}

fn pairs_present(obs: &ObsTable) -> BTreeSet<(String, String)> {
    (0..obs.len()).map(|i| (obs.cell_type.get(i).to_string(), obs.sm_name.get(i).to_string())).collect()
}

/// Resolves the target pairs and the hold-out.
pub fn choose_targets(obs: &ObsTable, spec: &TargetSpec, negative_control: &str) -> Result<(IdMap, bool)> {
    let present = pairs_present(obs);
    let cell_types: HashSet<&str> = obs.cell_type.levels().iter().map(|s| s.as_str()).collect();
    let is_control = |c: &str| c == negative_control || c == DMSO || POSITIVE_CONTROLS.contains(&c);
    let (pairs, holdout): (Vec<(String, String)>, bool) = match spec {
        TargetSpec::Listed(pairs) => {
            for (k, (t, c)) in pairs.iter().enumerate() {
                if pairs[..k].contains(&(t.clone(), c.clone())) {
                    return Err(Error::Data(format!("hold-out pair ({t}, {c}) is listed twice")));
                }
                if !present.contains(&(t.clone(), c.clone())) {
                    return Err(Error::Data(format!("hold-out pair ({t}, {c}) has no cells in the training data")));
                }
                if c == negative_control {
                    return Err(Error::Data(format!("hold-out pair ({t}, {c}) is the negative control, which every contrast needs")));
                }
            }
            (pairs.clone(), true)
        }
        TargetSpec::Drawn { n_compounds, cell_types: wanted, seed } => {
            if wanted.is_empty() {
                return Err(Error::Data("hold-out: no cell types given to draw compounds in".into()));
            }
            for t in wanted {
                if !cell_types.contains(t.as_str()) {
                    return Err(Error::Data(format!("hold-out cell type `{t}` has no cells (present: {})", sorted(&cell_types))));
                }
            }
            let mut candidates: Vec<String> = obs
                .sm_name
                .levels()
                .iter()
                .filter(|c| !is_control(c))
                .filter(|c| wanted.iter().all(|t| present.contains(&(t.clone(), c.to_string()))))
                .cloned()
                .collect();
            candidates.sort();
            if *n_compounds > candidates.len() {
                return Err(Error::Data(format!(
                    "hold-out asks for {n_compounds} compounds but only {} are measured in all of {}",
                    candidates.len(),
                    wanted.join(", ")
                )));
            }
            candidates.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(*seed));
            candidates.truncate(*n_compounds);
            candidates.sort();
            let pairs = wanted.iter().flat_map(|t| candidates.iter().map(move |c| (t.clone(), c.clone()))).collect();
            (pairs, true)
        }
        TargetSpec::IdMap(ids) => (ids.rows.iter().map(|r| (r.cell_type.clone(), r.sm_name.clone())).collect(), false),
    };
    if pairs.is_empty() {
        return Err(Error::Data("the hold-out is empty: no target pairs".into()));
    }
    // Every target's cell type needs its own untreated cells for the contrast.
    for (t, _) in &pairs {
        if !present.contains(&(t.clone(), negative_control.to_string())) {
            return Err(Error::Data(format!("target cell type `{t}` has no {negative_control} cells in the training data")));
        }
    }
    let targets = match spec {
        TargetSpec::IdMap(ids) => ids.clone(),
        _ => IdMap { rows: pairs.into_iter().enumerate().map(|(i, (t, c))| IdMapRow { id: i as i64, cell_type: t, sm_name: c }).collect() },
    };
    Ok((targets, holdout))
}

fn sorted(set: &HashSet<&str>) -> String {
    let mut v: Vec<&str> = set.iter().copied().collect();
    v.sort();
    v.join(", ")
}

pub fn split(obs: &ObsTable, spec: &TargetSpec, negative_control: &str, validation_fraction: f64, keep_target_relevant: bool, seed: u64) -> Result<SplitResult> {
    if !(0.0..1.0).contains(&validation_fraction) {
        return Err(Error::param("split.validation_fraction", format!("must be in [0, 1), got {validation_fraction}")));
    }
    let (targets, holdout) = choose_targets(obs, spec, negative_control)?;
    let target_pairs: HashSet<(&str, &str)> = targets.rows.iter().map(|r| (r.cell_type.as_str(), r.sm_name.as_str())).collect();
    let (mut train_rows, mut holdout_rows) = (Vec::new(), Vec::new());
    for i in 0..obs.len() {
        if holdout && target_pairs.contains(&(obs.cell_type.get(i), obs.sm_name.get(i))) {
            holdout_rows.push(i);
        } else {
            train_rows.push(i);
        }
    }
    let target_types: HashSet<&str> = target_pairs.iter().map(|p| p.0).collect();
    let target_compounds: HashSet<&str> = target_pairs.iter().map(|p| p.1).collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let validation_ids = train_rows
        .iter()
        .filter(|&&i| {
            // One draw per cell whatever the flag, so the flag changes only the kept cells.
            let draw = rng.random::<f64>() < validation_fraction;
            let relevant = target_types.contains(obs.cell_type.get(i)) || target_compounds.contains(obs.sm_name.get(i));
            draw && !(keep_target_relevant && relevant)
        })
        .map(|&i| obs.obs_id[i].clone())
        .collect();
    Ok(SplitResult { targets, train_rows, holdout_rows, validation_ids })
}
