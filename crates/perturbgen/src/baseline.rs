//! Prediction tables for target pairs that need no model: the all-zero matrix (public board
//! 0.90, SPEC §1).
use crate::error::{Error, Result};
use crate::io::de_table::{DeRowKey, DeTable};
use crate::io::id_map::IdMap;
use std::path::Path;

/// Row keys of the targets, with each compound's LINCS id and SMILES taken from de_train.
pub fn target_keys(targets: &IdMap, de_train: &DeTable, de_train_path: &Path) -> Result<Vec<DeRowKey>> {
    targets
        .rows
        .iter()
        .map(|r| {
            let known = de_train.keys.iter().find(|k| k.sm_name == r.sm_name).ok_or_else(|| {
                Error::invalid(de_train_path, format!("target compound `{}` has no row in the training DE table (nothing is known about it)", r.sm_name))
            })?;
            Ok(DeRowKey { cell_type: r.cell_type.clone(), sm_name: r.sm_name.clone(), sm_lincs_id: known.sm_lincs_id.clone(), smiles: known.smiles.clone(), control: known.control })
        })
        .collect()
}

/// The all-zero prediction for every target.
pub fn zero_prediction(targets: &IdMap, de_train: &DeTable, de_train_path: &Path) -> Result<DeTable> {
    let keys = target_keys(targets, de_train, de_train_path)?;
    Ok(DeTable { values: vec![0.0; keys.len() * de_train.genes.len()], keys, genes: de_train.genes.clone() })
}

/// Concatenates DE tables with identical genes, ordered by (compound, cell type) like de_train.
pub fn merge_tables(tables: Vec<(DeTable, std::path::PathBuf)>) -> Result<DeTable> {
    let mut iter = tables.into_iter();
    let Some((first, _)) = iter.next() else { return Err(Error::Data("no DE tables to merge".into())) };
    let mut rows: Vec<(DeRowKey, Vec<f64>)> = (0..first.n_rows()).map(|i| (first.keys[i].clone(), first.row(i).to_vec())).collect();
    let genes = first.genes;
    for (t, path) in iter {
        if t.genes != genes {
            return Err(Error::invalid(&path, "genes differ from the first table's"));
        }
        rows.extend((0..t.n_rows()).map(|i| (t.keys[i].clone(), t.row(i).to_vec())));
    }
    rows.sort_by(|a, b| (&a.0.sm_name, &a.0.cell_type).cmp(&(&b.0.sm_name, &b.0.cell_type)));
    if let Some(w) = rows.windows(2).find(|w| w[0].0.sm_name == w[1].0.sm_name && w[0].0.cell_type == w[1].0.cell_type) {
        return Err(Error::Data(format!("pair ({}, {}) is in two of the tables", w[0].0.cell_type, w[0].0.sm_name)));
    }
    let mut out = DeTable { genes, ..Default::default() };
    for (k, v) in rows {
        out.keys.push(k);
        out.values.extend(v);
    }
    Ok(out)
}
