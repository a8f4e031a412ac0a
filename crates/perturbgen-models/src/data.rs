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

/// The one-hot encoding of the chosen obs columns, with the levels seen in training; and the
/// additive-effect columns (`train.effects`), each level an index into the decoder's per-gene
/// effect table.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Covariates {
    pub columns: Vec<(String, Vec<String>)>,
    /// Additive-effect columns and their levels (absent in checkpoints written before effects).
    #[serde(default)]
    pub effects: Vec<(String, Vec<String>)>,
    /// `train.interaction`'s two columns and their levels, each level a row of the decoder's
    /// interaction factors (absent in checkpoints written before the interaction).
    #[serde(default)]
    pub interaction: Vec<(String, Vec<String>)>,
}

/// Levels of each column as they occur in `obs`, sorted (so that the encoding does not depend
/// on the cells' order).
fn fit_levels(obs: &ObsTable, columns: &[String], key: &str) -> Result<Vec<(String, Vec<String>)>> {
    let mut out = Vec::new();
    for name in columns {
        let column = obs_column(obs, name).ok_or_else(|| Error::param(key, format!("unknown obs column `{name}` (choose from {})", COVARIATE_COLUMNS.join(", "))))?;
        let mut used: Vec<bool> = vec![false; column.levels().len()];
        for &c in column.codes() {
            used[c as usize] = true;
        }
        let mut levels: Vec<String> = column.levels().iter().zip(&used).filter(|(_, &u)| u).map(|(l, _)| l.clone()).collect();
        levels.sort();
        out.push((name.clone(), levels));
    }
    Ok(out)
}

/// Per cell, the level of every column as an offset into the columns' concatenated levels. A
/// level not seen in training is an error naming the cell and column.
fn encode_levels(columns: &[(String, Vec<String>)], obs: &ObsTable, path: &Path) -> Result<Vec<Vec<u32>>> {
    let mut per_cell = vec![Vec::with_capacity(columns.len()); obs.len()];
    let mut offset = 0u32;
    for (name, levels) in columns {
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

impl Covariates {
    /// Levels of each column as they occur in `obs` (sorted, so the encoding does not depend
    /// on the cells' order); no additive effects ([`Covariates::with_effects`]).
    pub fn fit(obs: &ObsTable, columns: &[String]) -> Result<Self> {
        Ok(Self { columns: fit_levels(obs, columns, "train.covariates")?, effects: Vec::new(), interaction: Vec::new() })
    }

    /// The same with the additive-effect columns `effects` and their levels in `obs`.
    pub fn with_effects(self, obs: &ObsTable, effects: &[String]) -> Result<Self> {
        Ok(Self { effects: fit_levels(obs, effects, "train.effects")?, ..self })
    }

    /// The same with the interaction columns `columns` ([] or two) and their levels in `obs`.
    pub fn with_interaction(self, obs: &ObsTable, columns: &[String]) -> Result<Self> {
        Ok(Self { interaction: fit_levels(obs, columns, "train.interaction")?, ..self })
    }

    /// Rows of the decoder's interaction factors: both interaction columns' levels.
    pub fn n_interaction_levels(&self) -> usize {
        self.interaction.iter().map(|(_, l)| l.len()).sum()
    }

    /// Ids per cell: the effect columns' rows, then the interaction columns' rows.
    pub fn n_ids(&self) -> usize {
        self.effects.len() + self.interaction.len()
    }

    pub fn width(&self) -> usize {
        self.columns.iter().map(|(_, l)| l.len()).sum()
    }

    /// Rows of the decoder's effect table: every effect column's levels.
    pub fn n_effect_levels(&self) -> usize {
        self.effects.iter().map(|(_, l)| l.len()).sum()
    }

    /// Per cell, the active column of every covariate (offsets into the one-hot vector).
    /// A category not seen in training is an error naming the cell and column.
    pub fn encode(&self, obs: &ObsTable, path: &Path) -> Result<Vec<Vec<u32>>> {
        encode_levels(&self.columns, obs, path)
    }

    /// Per cell, the effect-table row of every effect column, then the interaction-factor row
    /// of both interaction columns ([`Covariates::n_ids`] ids).
    pub fn encode_effects(&self, obs: &ObsTable, path: &Path) -> Result<Vec<Vec<u32>>> {
        let mut ids = encode_levels(&self.effects, obs, path)?;
        for (cell, more) in ids.iter_mut().zip(encode_levels(&self.interaction, obs, path)?) {
            cell.extend(more);
        }
        Ok(ids)
    }

    /// The one-hot vector and effect rows of a group of cells given by its column values
    /// (`value(name)`), for generation; `Err(column, value)` names a level the model never saw
    /// (`value` None: the column is missing).
    pub fn encode_group<'a>(&self, value: impl Fn(&str) -> Option<&'a str>) -> std::result::Result<(Vec<f32>, Vec<u32>), (String, Option<String>, usize)> {
        let find = |columns: &[(String, Vec<String>)]| -> std::result::Result<Vec<u32>, (String, Option<String>, usize)> {
            let mut offset = 0u32;
            let mut out = Vec::with_capacity(columns.len());
            for (name, levels) in columns {
                let v = value(name).ok_or_else(|| (name.clone(), None, levels.len()))?;
                let j = levels.iter().position(|l| l == v).ok_or_else(|| (name.clone(), Some(v.to_string()), levels.len()))?;
                out.push(offset + j as u32);
                offset += levels.len() as u32;
            }
            Ok(out)
        };
        let mut onehot = vec![0f32; self.width()];
        for j in find(&self.columns)? {
            onehot[j as usize] = 1.0;
        }
        let mut ids = find(&self.effects)?;
        ids.extend(find(&self.interaction)?);
        Ok((onehot, ids))
    }
}

/// What the decoder is conditioned on for a batch of cells: the one-hot covariates [B, C] and,
/// with additive effects or an interaction, each cell's effect-table rows then interaction-factor
/// rows [B, E] (u32, [`Covariates::n_ids`] columns).
pub struct Conditioning {
    pub onehot: Tensor,
    pub effects: Option<Tensor>,
}

impl Conditioning {
    /// `rows` cells, each with its one-hot vector (`onehot`, row-major [rows, width]) and effect
    /// rows (`effects`, row-major [rows, E]; E = 0 without effects).
    pub fn from_vecs(onehot: Vec<f32>, width: usize, effects: Vec<u32>, n_effects: usize, rows: usize, device: &Device) -> candle_core::Result<Self> {
        let onehot = Tensor::from_vec(onehot, (rows, width), device)?;
        let effects = if n_effects == 0 { None } else { Some(Tensor::from_vec(effects, (rows, n_effects), device)?) };
        Ok(Self { onehot, effects })
    }
}

/// Cells ready for training or scoring: sparse counts, scale and one-hot codes.
#[derive(Debug, Clone)]
pub struct ModelData {
    pub cells: Cells,
    pub scale: Vec<f32>,
    pub onehot: Vec<Vec<u32>>,
    pub n_covariates: usize,
    /// Per cell, its effect-table rows (empty vectors without `train.effects`).
    pub effects: Vec<Vec<u32>>,
    pub n_effects: usize,
}

impl ModelData {
    pub fn new(cells: Cells, scale: Scale, covariates: &Covariates, obs_path: &Path) -> Result<Self> {
        let onehot = covariates.encode(&cells.obs, obs_path)?;
        let effects = covariates.encode_effects(&cells.obs, obs_path)?;
        let scale = scale.of(&cells);
        Ok(Self { cells, scale, onehot, n_covariates: covariates.width(), effects, n_effects: covariates.n_ids() })
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

    /// The decoder's conditioning for `rows`: one-hot covariates and effect rows.
    pub fn conditioning(&self, rows: &[usize], device: &Device) -> Result<Conditioning> {
        let effects: Vec<u32> = rows.iter().flat_map(|&r| self.effects[r].iter().copied()).collect();
        Ok(Conditioning { onehot: self.onehot(rows, device)?, effects: (self.n_effects > 0).then(|| Tensor::from_vec(effects, (rows.len(), self.n_effects), device)).transpose()? })
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
