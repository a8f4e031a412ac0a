//! Trained models applied to new targets without retraining (config section `predict`;
//! `pgen-predict`, the workflow's `predict` target).
use super::{ensure, ParamGuard};
use crate::error::Result;
use std::path::PathBuf;

/// What the `predict` target predicts, and with which model. Everything else is the run's own:
/// its training cells and their pseudo-bulk, and the `sizes`, `generate` and `de` settings, so
/// that the run's own targets come out byte for byte as its generate job's.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PredictParams {
    /// CSV of the (cell type, compound) pairs to predict: an id_map (id,cell_type,sm_name) or
    /// just cell_type,sm_name. Each cell type and compound must be among the model's training
    /// cells, the pair itself not (its DE is measured). null = no predict target.
    pub targets: Option<PathBuf>,
    /// A trained model's folder (model.safetensors + model.json, pgen-train's output, e.g.
    /// results/models/dgd); null = every model of train.models, as this workflow trains it.
    pub model: Option<PathBuf>,
}

impl ParamGuard for PredictParams {
    type Checked = PredictParams;
    const SECTION: &'static str = "predict";

    fn check(self) -> Result<PredictParams> {
        let s = Self::SECTION;
        for (key, path) in [("targets", &self.targets), ("model", &self.model)] {
            ensure(path.as_ref().is_none_or(|p| !p.as_os_str().is_empty()), s, key, || "an empty path (null for none)".into())?;
        }
        Ok(self)
    }
}
