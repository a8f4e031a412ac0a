//! Where the cells come from (config section `input`).
use super::{ensure, ParamGuard};
use crate::error::Result;
use crate::io::obs::OBS_COLUMNS;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The kind of input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A data set made by pgen-simulate (section `simulate`) in results/simulated/.
    Simulate,
    /// The real competition files in `kaggle_dir`.
    Kaggle,
    /// The cells of an AnnData file (`h5ad.path`); no id_map: split mode holdout.
    H5ad,
}

/// An AnnData (.h5ad) file with the cells.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct H5adInput {
    /// The .h5ad file (source h5ad; with simulate/kaggle it replaces adata_train.parquet +
    /// adata_obs_meta.csv).
    pub path: Option<PathBuf>,
    /// Where the raw counts are: `X`, `raw` (raw/X) or `layers/<name>`.
    pub counts: String,
    /// (obs_id, gene) pairs to drop (adata_excluded_ids.csv layout).
    pub excluded: Option<PathBuf>,
}

impl Default for H5adInput {
    fn default() -> Self {
        Self { path: None, counts: "X".to_string(), excluded: None }
    }
}

/// Where the cells come from (config section `input`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct InputParams {
    pub source: Source,
    /// The folder with adata_train.parquet, adata_obs_meta.csv and (optional)
    /// adata_excluded_ids.csv, de_train.parquet, id_map.csv (source kaggle).
    pub kaggle_dir: PathBuf,
    /// Gene order for ingest (genes.txt or a de_train.parquet); null = automatic (the
    /// simulation's genes.txt, or `<kaggle_dir>/de_train.parquet` if present).
    pub genes: Option<PathBuf>,
    pub h5ad: H5adInput,
    /// The study's own obs column names, keyed by the pipeline's (Kaggle's) names, e.g.
    /// `{cell_type: celltype, sm_name: condition, donor_id: donor}`.
    pub columns: BTreeMap<String, String>,
}

impl Default for InputParams {
    fn default() -> Self {
        Self { source: Source::Simulate, kaggle_dir: PathBuf::from("data/kaggle"), genes: None, h5ad: H5adInput::default(), columns: BTreeMap::new() }
    }
}

/// Whether `where_` names a readable counts location of an AnnData file.
fn counts_location(where_: &str) -> bool {
    matches!(where_, "X" | "raw") || where_.strip_prefix("layers/").is_some_and(|name| !name.is_empty())
}

impl ParamGuard for InputParams {
    type Checked = InputParams;
    const SECTION: &'static str = "input";

    fn check(self) -> Result<InputParams> {
        let s = Self::SECTION;
        let c = &self.h5ad.counts;
        ensure(counts_location(c), s, "h5ad.counts", || format!("`{c}`: expected X, raw or layers/<name>"))?;
        ensure(self.source != Source::H5ad || self.h5ad.path.is_some(), s, "h5ad.path", || "source h5ad needs the .h5ad file".into())?;
        for (name, column) in &self.columns {
            ensure(OBS_COLUMNS.contains(&name.as_str()), s, &format!("columns.{name}"), || format!("not a pipeline column (one of {})", OBS_COLUMNS.join(", ")))?;
            ensure(!column.trim().is_empty(), s, &format!("columns.{name}"), || "an empty column name".into())?;
        }
        Ok(self)
    }
}
