//! Training data for the generative models: the cells' counts kept sparse (CSR) and densified
//! per mini-batch inside the NB op, the per-cell scale M, and the one-hot conditioning vector.
use super::nb_loss::SparseBatch;
use perturbgen::categorical::Categorical;
use perturbgen::cells::Cells;
use perturbgen::io::sizes::CellScale;
use crate::error::{Error, Result};
use perturbgen::io::obs::ObsTable;
use candle_core::{Device, Tensor};
use std::path::Path;

/// Obs columns a model may condition on.
pub const COVARIATE_COLUMNS: [&str; 7] = ["cell_type", "plate_name", "well", "donor_id", "row", "sm_name", "library_id"];

pub fn obs_column<'a>(obs: &'a ObsTable, name: &str) -> Option<&'a Categorical> {
    Some(match name {
        "cell_type" => &obs.cell_type,
        "plate_name" => &obs.plate_name,
        "well" => &obs.well,
        "donor_id" => &obs.donor_id,
        "row" => &obs.row,
        "sm_name" => &obs.sm_name,
        "library_id" => &obs.library_id,
        _ => return None,
    })
}

/// How the per-cell scale M of the NB mean (m = M · link(decoder)) is taken from the counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scale {
    Max,
    Sum,
    Mean,
}

impl Scale {
    /// The write-up's link for this scale: sigmoid with the max count (no gene's mean above the
    /// cell's largest count), softplus with the sum or mean (a sigmoid would cap every gene at
    /// the mean count).
    pub fn default_link(self) -> super::nb_loss::Link {
        match self {
            Self::Max => super::nb_loss::Link::Sigmoid,
            Self::Sum | Self::Mean => super::nb_loss::Link::Softplus,
        }
    }

    /// M for every cell (at least 1, so that an all-zero cell still has a defined mean): the
    /// same statistic the size forests predict (`perturbgen::io::sizes::CellScale`).
    pub fn of(self, cells: &Cells) -> Vec<f32> {
        let stat = match self {
            Self::Max => CellScale::Max,
            Self::Sum => CellScale::Sum,
            Self::Mean => CellScale::Mean,
        };
        (0..cells.len()).map(|i| stat.of_cell(cells, i) as f32).collect()
    }
}

/// The one-hot encoding of the chosen obs columns, with the levels seen in training.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Covariates {
    pub columns: Vec<(String, Vec<String>)>,
}

impl Covariates {
    /// Levels of each column as they occur in `obs` (sorted, so the encoding does not depend
    /// on the cells' order).
    pub fn fit(obs: &ObsTable, columns: &[String]) -> Result<Self> {
        let mut out = Vec::new();
        for name in columns {
            let column = obs_column(obs, name).ok_or_else(|| {
                Error::param("train.covariates", format!("unknown covariate `{name}` (choose from {})", COVARIATE_COLUMNS.join(", ")))
            })?;
            let mut used: Vec<bool> = vec![false; column.levels().len()];
            for &c in column.codes() {
                used[c as usize] = true;
            }
            let mut levels: Vec<String> = column.levels().iter().zip(&used).filter(|(_, &u)| u).map(|(l, _)| l.clone()).collect();
            levels.sort();
            out.push((name.clone(), levels));
        }
        Ok(Self { columns: out })
    }

    pub fn width(&self) -> usize {
        self.columns.iter().map(|(_, l)| l.len()).sum()
    }

    /// Per cell, the active column of every covariate (offsets into the one-hot vector).
    /// A category not seen in training is an error naming the cell and column.
    pub fn encode(&self, obs: &ObsTable, path: &Path) -> Result<Vec<Vec<u32>>> {
        let mut per_cell = vec![Vec::with_capacity(self.columns.len()); obs.len()];
        let mut offset = 0u32;
        for (name, levels) in &self.columns {
            let column = obs_column(obs, name).ok_or_else(|| Error::param("train.covariates", format!("unknown covariate `{name}`")))?;
            let index: std::collections::HashMap<&str, u32> = levels.iter().enumerate().map(|(i, l)| (l.as_str(), i as u32)).collect();
            let map: Vec<Option<u32>> = column.levels().iter().map(|l| index.get(l.as_str()).copied()).collect();
            for (i, cell) in per_cell.iter_mut().enumerate() {
                match map[column.code(i) as usize] {
                    Some(j) => cell.push(offset + j),
                    None => {
                        return Err(perturbgen::Error::BadValue {
                            path: path.to_path_buf(),
                            row: i as u64 + 1,
                            column: name.clone(),
                            expected: format!("one of the {} categories the model was trained on", levels.len()),
                            found: format!("`{}` (cell {})", column.get(i), obs.obs_id[i]),
                        }
                        .into())
                    }
                }
            }
            offset += levels.len() as u32;
        }
        Ok(per_cell)
    }
}

/// Cells ready for training or scoring: sparse counts, scale and one-hot codes.
#[derive(Debug, Clone)]
pub struct ModelData {
    pub cells: Cells,
    pub scale: Vec<f32>,
    pub onehot: Vec<Vec<u32>>,
    pub n_covariates: usize,
}

impl ModelData {
    pub fn new(cells: Cells, scale: Scale, covariates: &Covariates, obs_path: &Path) -> Result<Self> {
        let onehot = covariates.encode(&cells.obs, obs_path)?;
        let scale = scale.of(&cells);
        Ok(Self { cells, scale, onehot, n_covariates: covariates.width() })
    }

    pub fn len(&self) -> usize {
        self.cells.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    pub fn n_genes(&self) -> usize {
        self.cells.counts.n_genes()
    }

    /// The rows `rows` as an NB-op batch.
    pub fn batch(&self, rows: &[usize]) -> SparseBatch {
        let counts = &self.cells.counts;
        let mut b = SparseBatch { n_genes: counts.n_genes(), indptr: Vec::with_capacity(rows.len() + 1), ..Default::default() };
        b.indptr.push(0);
        for &r in rows {
            let (idx, data) = counts.row(r);
            b.indices.extend_from_slice(idx);
            b.data.extend(data.iter().map(|&d| d as f32));
            b.indptr.push(b.indices.len());
            b.scale.push(self.scale[r]);
        }
        b
    }

    /// The one-hot conditioning matrix [rows, n_covariates].
    pub fn onehot(&self, rows: &[usize], device: &Device) -> Result<Tensor> {
        let w = self.n_covariates;
        let mut v = vec![0f32; rows.len() * w];
        for (i, &r) in rows.iter().enumerate() {
            for &c in &self.onehot[r] {
                v[i * w + c as usize] = 1.0;
            }
        }
        Ok(Tensor::from_vec(v, (rows.len(), w), device)?)
    }
}

/// Training cells split into the cells a model trains on and its validation cells.
pub struct ValidationSplit {
    pub train: Cells,
    pub val: Cells,
}

/// Takes the cells listed in `ids_path` (one obs_id per line, e.g. the split stage's
/// validation_ids.txt) out of `cells` as validation cells.
pub fn split_validation(cells: Cells, ids_path: &Path) -> Result<ValidationSplit> {
    let text = std::fs::read_to_string(ids_path).map_err(|e| Error::io(ids_path, e))?;
    let index: std::collections::HashMap<&str, usize> = cells.obs.obs_id.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
    let mut is_val = vec![false; cells.len()];
    for (line, id) in text.lines().enumerate() {
        let id = id.trim();
        if id.is_empty() {
            continue;
        }
        let &i = index.get(id).ok_or_else(|| perturbgen::Error::BadValue {
            path: ids_path.to_path_buf(),
            row: line as u64 + 1,
            column: "obs_id".into(),
            expected: "the obs_id of a training cell".into(),
            found: format!("`{id}`"),
        })?;
        is_val[i] = true;
    }
    let train_rows: Vec<usize> = (0..cells.len()).filter(|&i| !is_val[i]).collect();
    let val_rows: Vec<usize> = (0..cells.len()).filter(|&i| is_val[i]).collect();
    if train_rows.is_empty() || val_rows.is_empty() {
        return Err(Error::invalid(ids_path, format!("{} training and {} validation cells: both must be non-empty", train_rows.len(), val_rows.len())));
    }
    Ok(ValidationSplit { train: cells.take(&train_rows), val: cells.take(&val_rows) })
}
