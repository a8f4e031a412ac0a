//! Covariates for regressing DE values: one-hot (cell type, compound) and optional per-gene
//! extras, the same for training rows and targets.
//!
//! Column order (the Python comparison test builds the same matrix): the training table's cell
//! types (sorted), then its compounds (sorted), then the extras in the order given.
use crate::error::{Error, Result};
use perturbgen::io::de_table::DeTable;
use perturbgen::io::id_map::IdMap;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;

/// A per-gene feature computed from the training DE values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Extra {
    /// The compound's mean DE value for this gene over its other measured cell types (for a
    /// training row, leaving that row out; NaN = missing when there is none).
    CompoundMean,
    /// The cell type's mean DE value for this gene over its other measured compounds.
    CellTypeMean,
}

impl Extra {
    pub fn name(self) -> &'static str {
        match self {
            Extra::CompoundMean => "compound_mean",
            Extra::CellTypeMean => "cell_type_mean",
        }
    }
}

/// The design: a fixed one-hot block per row plus, per extra, the training rows averaged.
#[derive(Debug, Clone)]
pub struct Design {
    pub cell_types: Vec<String>,
    pub compounds: Vec<String>,
    pub extras: Vec<Extra>,
    /// Training rows × one-hot columns (0/1), row-major.
    pub train_onehot: Vec<f32>,
    /// Target rows × one-hot columns.
    pub target_onehot: Vec<f32>,
    /// For each extra, each training row's list of training rows to average.
    pub train_sources: Vec<Vec<Vec<usize>>>,
    pub target_sources: Vec<Vec<Vec<usize>>>,
}

/// (cell_type, compound) of each target.
pub type Pair = (String, String);

/// Checks the training table: not empty, finite values, no pair twice.
pub fn check_training(de_train: &DeTable, path: &Path) -> Result<()> {
    if de_train.n_rows() == 0 {
        return Err(Error::invalid(path, "the training DE table has no rows: nothing to learn from"));
    }
    if de_train.genes.is_empty() {
        return Err(Error::invalid(path, "the training DE table has no gene columns"));
    }
    let ng = de_train.genes.len();
    if let Some(pos) = de_train.values.iter().position(|v| !v.is_finite()) {
        return Err(Error::bad_value(path, (pos / ng) as u64 + 1, &de_train.genes[pos % ng], "a finite number", de_train.values[pos].to_string()));
    }
    let mut seen = HashSet::new();
    for (i, k) in de_train.keys.iter().enumerate() {
        if !seen.insert((&k.cell_type, &k.sm_name)) {
            return Err(Error::invalid(path, format!("row {}: pair ({}, {}) appears twice", i + 1, k.cell_type, k.sm_name)));
        }
    }
    Ok(())
}

impl Design {
    /// Builds the design for `targets` from `de_train`. A target whose compound has no training
    /// row has no features (its one-hot column would be all zero and no mean exists): that is
    /// an error naming it. A target cell type without training rows (one measured only under the
    /// negative control: the scGen/CPA task) gets an all-zero cell-type block, so the trees
    /// predict it from the compound alone, and no `cell_type_mean` (missing).
    pub fn new(de_train: &DeTable, targets: &[Pair], extras: &[Extra], de_train_path: &Path, targets_path: &Path) -> Result<Self> {
        check_training(de_train, de_train_path)?;
        if targets.is_empty() {
            return Err(Error::invalid(targets_path, "no target pairs to predict"));
        }
        let cell_types: Vec<String> = de_train.keys.iter().map(|k| k.cell_type.clone()).collect::<BTreeSet<_>>().into_iter().collect();
        let compounds: Vec<String> = de_train.keys.iter().map(|k| k.sm_name.clone()).collect::<BTreeSet<_>>().into_iter().collect();
        let ct_index: HashMap<&str, usize> = cell_types.iter().enumerate().map(|(i, c)| (c.as_str(), i)).collect();
        let cp_index: HashMap<&str, usize> = compounds.iter().enumerate().map(|(i, c)| (c.as_str(), i)).collect();
        for (row, (ct, cp)) in targets.iter().enumerate() {
            if !cp_index.contains_key(cp.as_str()) {
                return Err(Error::invalid(
                    targets_path,
                    format!("row {}: compound `{cp}` (cell type {ct}) has no row in the training DE table {}, so it has no features (no one-hot column, no mean DE)", row + 1, de_train_path.display()),
                ));
            }
            if !ct_index.contains_key(ct.as_str()) {
                log::warn!(
                    "{} row {}: cell type `{ct}` has no row in the training DE table: predicted from the compound alone (all-zero cell-type columns)",
                    targets_path.display(),
                    row + 1
                );
            }
        }
        let p = cell_types.len() + compounds.len();
        let onehot = |ct: &str, cp: &str| {
            let mut v = vec![0f32; p];
            if let Some(&i) = ct_index.get(ct) {
                v[i] = 1.0;
            }
            v[cell_types.len() + cp_index[cp]] = 1.0;
            v
        };
        let train_onehot: Vec<f32> = de_train.keys.iter().flat_map(|k| onehot(&k.cell_type, &k.sm_name)).collect();
        let target_onehot: Vec<f32> = targets.iter().flat_map(|(ct, cp)| onehot(ct, cp)).collect();

        // Rows of each compound / cell type, for the means.
        let mut by_compound: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut by_cell_type: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, k) in de_train.keys.iter().enumerate() {
            by_compound.entry(&k.sm_name).or_default().push(i);
            by_cell_type.entry(&k.cell_type).or_default().push(i);
        }
        let sources = |ct: &str, cp: &str, extra: Extra| -> Vec<usize> {
            match extra {
                Extra::CompoundMean => by_compound.get(cp).map(|r| r.iter().copied().filter(|&j| de_train.keys[j].cell_type != ct).collect()).unwrap_or_default(),
                Extra::CellTypeMean => by_cell_type.get(ct).map(|r| r.iter().copied().filter(|&j| de_train.keys[j].sm_name != cp).collect()).unwrap_or_default(),
            }
        };
        let train_sources = extras.iter().map(|&e| de_train.keys.iter().map(|k| sources(&k.cell_type, &k.sm_name, e)).collect()).collect();
        let target_sources = extras.iter().map(|&e| targets.iter().map(|(ct, cp)| sources(ct, cp, e)).collect()).collect();
        Ok(Self { cell_types, compounds, extras: extras.to_vec(), train_onehot, target_onehot, train_sources, target_sources })
    }

    pub fn n_onehot(&self) -> usize {
        self.cell_types.len() + self.compounds.len()
    }

    pub fn n_features(&self) -> usize {
        self.n_onehot() + self.extras.len()
    }

    /// Feature names in column order.
    pub fn feature_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.cell_types.iter().map(|c| format!("cell_type={c}")).collect();
        names.extend(self.compounds.iter().map(|c| format!("sm_name={c}")));
        names.extend(self.extras.iter().map(|e| e.name().to_string()));
        names
    }

    /// Fills `out` with the row-major matrix for gene `g` (training rows if `train`, else targets).
    pub fn matrix_for_gene(&self, de_train: &DeTable, g: usize, train: bool, out: &mut Vec<f32>) {
        let (onehot, sources) = if train { (&self.train_onehot, &self.train_sources) } else { (&self.target_onehot, &self.target_sources) };
        let p0 = self.n_onehot();
        let n = onehot.len() / p0.max(1);
        let ng = de_train.genes.len();
        out.clear();
        out.reserve(n * self.n_features());
        for i in 0..n {
            out.extend_from_slice(&onehot[i * p0..(i + 1) * p0]);
            for src in sources {
                let rows = &src[i];
                if rows.is_empty() {
                    out.push(f32::NAN);
                } else {
                    let sum: f64 = rows.iter().map(|&j| de_train.values[j * ng + g]).sum();
                    out.push((sum / rows.len() as f64) as f32);
                }
            }
        }
    }
}

/// The target pairs of an id_map, in its order.
pub fn target_pairs(targets: &IdMap) -> Vec<Pair> {
    targets.rows.iter().map(|r| (r.cell_type.clone(), r.sm_name.clone())).collect()
}
