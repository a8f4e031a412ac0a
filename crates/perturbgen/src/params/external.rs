//! Another model's generated cells, scored like ours (config section `external`).
use super::{ensure, ParamGuard};
use crate::error::Result;
use crate::io::obs::OBS_COLUMNS;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Generated cells from outside the pipeline (CPA, scGen, scVI, …) as an AnnData file: summed
/// into pseudo-bulk samples and run through the same limma contrast as the generative routes'
/// `generate.reference: real` (the target cell type's real samples), scored as route `name`
/// (results/predictions/<name>.parquet; pgen-external).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ExternalParams {
    /// The .h5ad of generated cells (counts in `counts`; obs with cell type, compound, donor,
    /// plate and well per cell; var names = the pipeline's genes, any order); null = no such
    /// route.
    pub cells: Option<PathBuf>,
    /// The route's name (its prediction, score and submission files; a name no other route or
    /// blend has).
    pub name: String,
    /// Where the counts are: `X`, `raw` (raw/X) or `layers/<name>`.
    pub counts: String,
    /// The file's own obs column names, keyed by the pipeline's names, as `input.columns`
    /// (unmapped: cell_type, sm_name, donor_id, plate_name, well; obs_id defaults to the obs
    /// names), e.g. `{cell_type: celltype, sm_name: condition}`.
    pub obs: BTreeMap<String, String>,
}

impl Default for ExternalParams {
    fn default() -> Self {
        Self { cells: None, name: "external".to_string(), counts: "X".to_string(), obs: BTreeMap::new() }
    }
}

/// A route name that can name files and Snakemake wildcards: letters, digits, `_`, `-`, `.`.
fn file_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 100 && !name.starts_with('.') && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

impl ParamGuard for ExternalParams {
    type Checked = ExternalParams;
    const SECTION: &'static str = "external";

    fn check(self) -> Result<ExternalParams> {
        let s = Self::SECTION;
        let n = &self.name;
        ensure(file_name(n), s, "name", || format!("`{n}`: a route name of letters, digits, `_`, `-` and `.` (it names files)"))?;
        let c = &self.counts;
        let where_ok = matches!(c.as_str(), "X" | "raw") || c.strip_prefix("layers/").is_some_and(|l| !l.is_empty());
        ensure(where_ok, s, "counts", || format!("`{c}`: expected X, raw or layers/<name>"))?;
        ensure(self.cells.as_ref().is_none_or(|p| !p.as_os_str().is_empty()), s, "cells", || "an empty path (null for no external cells)".into())?;
        for (name, column) in &self.obs {
            ensure(OBS_COLUMNS.contains(&name.as_str()), s, &format!("obs.{name}"), || format!("not a pipeline column (one of {})", OBS_COLUMNS.join(", ")))?;
            ensure(!column.trim().is_empty(), s, &format!("obs.{name}"), || "an empty column name".into())?;
        }
        Ok(self)
    }
}

impl ExternalParams {
    /// The obs mapping as `NAME=COLUMN` flags (pgen-external --column).
    pub fn column_flags(&self) -> Vec<String> {
        self.obs.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }
}
