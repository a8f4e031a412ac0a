//! Prediction tables for target pairs that need no model (SPEC §5: OP3's baselines): the all-zero
//! matrix (public board 0.90), the mean de_train row, the target cell type's mean over its
//! measured compounds, and the compound's mean over the cell types it was measured in.
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

/// The baselines' route names (the leaderboard marks them as baselines).
pub const BASELINES: [&str; 4] = ["zero", "global_mean", "mean_cell_type", "mean_compound"];

/// A prediction that needs no model. (OP3 calls the last two `mean_across_compounds` and
/// `mean_across_celltypes` the other way round; ours are named by what they compute.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Baseline {
    /// Every value 0.
    Zero,
    /// The mean of every de_train row.
    GlobalMean,
    /// The target cell type's mean over its de_train rows (its measured compounds); 0 where the
    /// cell type has none.
    MeanCellType,
    /// The target compound's mean over its de_train rows (the other cell types it was measured in).
    MeanCompound,
}

impl Baseline {
    pub fn name(self) -> &'static str {
        match self {
            Baseline::Zero => BASELINES[0],
            Baseline::GlobalMean => BASELINES[1],
            Baseline::MeanCellType => BASELINES[2],
            Baseline::MeanCompound => BASELINES[3],
        }
    }
}

/// The mean of the de_train rows for which `keep` holds, or None when there are none.
fn mean_row(de_train: &DeTable, keep: impl Fn(&DeRowKey) -> bool) -> Option<Vec<f64>> {
    let ng = de_train.genes.len();
    let mut sum = vec![0.0; ng];
    let mut n = 0usize;
    for (i, k) in de_train.keys.iter().enumerate() {
        if keep(k) {
            for (s, v) in sum.iter_mut().zip(de_train.row(i)) {
                *s += v;
            }
            n += 1;
        }
    }
    (n > 0).then(|| sum.into_iter().map(|s| s / n as f64).collect())
}

/// The baseline's prediction for every target, in id_map order, with de_train's genes.
pub fn predict(baseline: Baseline, targets: &IdMap, de_train: &DeTable, de_train_path: &Path) -> Result<DeTable> {
    let keys = target_keys(targets, de_train, de_train_path)?;
    let ng = de_train.genes.len();
    let mut values = Vec::with_capacity(keys.len() * ng);
    let global = match baseline {
        Baseline::GlobalMean => Some(mean_row(de_train, |_| true).ok_or_else(|| Error::invalid(de_train_path, "no rows to average"))?),
        _ => None,
    };
    for k in &keys {
        let row = match baseline {
            Baseline::Zero => None,
            Baseline::GlobalMean => global.clone(),
            Baseline::MeanCompound => mean_row(de_train, |r| r.sm_name == k.sm_name),
            Baseline::MeanCellType => {
                let row = mean_row(de_train, |r| r.cell_type == k.cell_type);
                if row.is_none() {
                    log::warn!("mean_cell_type: `{}` has no measured compound in {}: its rows are 0", k.cell_type, de_train_path.display());
                }
                row
            }
        };
        values.extend(row.unwrap_or_else(|| vec![0.0; ng]));
    }
    Ok(DeTable { values, keys, genes: de_train.genes.clone() })
}

/// The all-zero prediction for every target.
pub fn zero_prediction(targets: &IdMap, de_train: &DeTable, de_train_path: &Path) -> Result<DeTable> {
    predict(Baseline::Zero, targets, de_train, de_train_path)
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
