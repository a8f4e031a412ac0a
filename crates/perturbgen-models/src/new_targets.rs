//! New targets for a trained model (`pgen-predict`): what it can be asked about. A model
//! generates a (cell type, compound) pair from what it learnt about each on its own, so both
//! must be among its training cells — a level it never saw is refused, naming the row. A pair
//! measured in the training cells is refused too: its generated samples would be pooled with
//! the real ones in limma (its DE is measured: de_train has it).
use crate::checkpoint::CheckpointMeta;
use crate::error::{Error, Result};
use perturbgen::cells::Cells;
use perturbgen::io::id_map::IdMap;
use std::collections::{BTreeSet, HashSet};
use std::path::Path;

/// Checks `targets` (read from `targets_path`) against the model's training cells: the cells of
/// `training` (read from `training_path`) whose ids the model records.
pub fn check_targets(meta: &CheckpointMeta, training: &Cells, training_path: &Path, targets: &IdMap, targets_path: &Path) -> Result<()> {
    let model_ids: HashSet<&str> = meta.train_ids.iter().chain(&meta.val_ids).map(String::as_str).collect();
    let obs = &training.obs;
    let (mut cell_types, mut compounds) = (BTreeSet::new(), BTreeSet::new());
    let mut measured = HashSet::new();
    for i in 0..obs.len() {
        let (ct, sm) = (obs.cell_type.get(i), obs.sm_name.get(i));
        measured.insert((ct, sm));
        if model_ids.contains(obs.obs_id[i].as_str()) {
            cell_types.insert(ct);
            compounds.insert(sm);
        }
    }
    if cell_types.is_empty() {
        return Err(Error::invalid(training_path, format!("none of the model's {} cells: not the training cells it was trained on", model_ids.len())));
    }
    let mut listed = HashSet::new();
    for (r, t) in targets.rows.iter().enumerate() {
        let row = r as u64 + 1;
        let bad = |column: &str, expected: String, found: String| Error::Core(perturbgen::Error::bad_value(targets_path, row, column, expected, found));
        if !cell_types.contains(t.cell_type.as_str()) {
            return Err(bad("cell_type", format!("one of the {} cell types the model was trained on", cell_types.len()), format!("`{}`", t.cell_type)));
        }
        if !compounds.contains(t.sm_name.as_str()) {
            return Err(bad("sm_name", format!("one of the {} compounds the model was trained on", compounds.len()), format!("`{}`", t.sm_name)));
        }
        if measured.contains(&(t.cell_type.as_str(), t.sm_name.as_str())) {
            return Err(bad("sm_name", "a pair not measured in the training cells (a measured pair's DE is in de_train)".into(), format!("`{}` × `{}`", t.cell_type, t.sm_name)));
        }
        if !listed.insert((t.cell_type.as_str(), t.sm_name.as_str())) {
            return Err(bad("sm_name", "each pair once".into(), format!("`{}` × `{}` again", t.cell_type, t.sm_name)));
        }
    }
    Ok(())
}
