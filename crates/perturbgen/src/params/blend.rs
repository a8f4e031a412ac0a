//! The blends' settings (config section `blend`): which routes are averaged, with which weights,
//! and the inner hold-out the weights are fitted on.
use super::{ensure, ensure_named, ensure_unique, ParamGuard};
use crate::error::Result;
use std::collections::BTreeMap;

/// The inner hold-out (pairs drawn from de_train only; the routes are refitted without them).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct InnerParams {
    /// Pairs drawn per target cell type, at least 1.
    pub draw: usize,
    pub seed: u64,
    /// The cell types to draw pairs of; `[]` = the cell types of the targets.
    pub cell_types: Vec<String>,
}

impl Default for InnerParams {
    fn default() -> Self {
        Self { draw: 2, seed: 0, cell_types: Vec::new() }
    }
}

/// One blend: a weighted mean of routes' predictions.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BlendSpec {
    /// The routes blended (at least one, each once).
    pub routes: Vec<String>,
    /// One weight per route, in `routes` order (non-negative, sum 1); null = fitted on the inner
    /// hold-out (routes with an inner run only: xgb, forest and the baselines).
    #[serde(default)]
    pub weights: Option<Vec<f64>>,
}

/// Blends (config section `blend`): each is a route of its own on the leaderboard.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct BlendParams {
    pub inner: InnerParams,
    /// Blend name (letters, digits, `_`) → its routes and weights.
    pub blends: BTreeMap<String, BlendSpec>,
}

impl Default for BlendParams {
    fn default() -> Self {
        let spec = |routes: &[&str]| BlendSpec { routes: routes.iter().map(|r| r.to_string()).collect(), weights: None };
        Self { inner: InnerParams::default(), blends: BTreeMap::from([("xgb_zero".to_string(), spec(&["xgb", "zero"])), ("xgb_forest".to_string(), spec(&["xgb", "forest"]))]) }
    }
}

/// Sum-to-one tolerance for given weights (they are written by hand, e.g. 0.1 + 0.2 + 0.7).
const WEIGHT_SUM_TOLERANCE: f64 = 1e-6;

impl ParamGuard for BlendParams {
    type Checked = BlendParams;
    const SECTION: &'static str = "blend";

    fn check(self) -> Result<BlendParams> {
        let s = Self::SECTION;
        ensure(self.inner.draw >= 1, s, "inner.draw", || "must be at least 1".into())?;
        ensure_named(&self.inner.cell_types, s, "inner.cell_types")?;
        ensure_unique(&self.inner.cell_types, s, "inner.cell_types")?;
        for (name, spec) in &self.blends {
            let key = format!("blends.{name}");
            ensure(!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), s, &key, || "a blend name is letters, digits and `_` (it names files)".into())?;
            ensure(!spec.routes.is_empty(), s, &format!("{key}.routes"), || "at least one route".into())?;
            ensure_unique(&spec.routes, s, &format!("{key}.routes"))?;
            if let Some(w) = &spec.weights {
                let wkey = format!("{key}.weights");
                ensure(w.len() == spec.routes.len(), s, &wkey, || format!("{} weights for {} routes {:?}", w.len(), spec.routes.len(), spec.routes))?;
                ensure(w.iter().all(|x| x.is_finite() && *x >= 0.0), s, &wkey, || format!("{w:?}: weights are non-negative numbers"))?;
                let sum: f64 = w.iter().sum();
                ensure((sum - 1.0).abs() <= WEIGHT_SUM_TOLERANCE, s, &wkey, || format!("{w:?} sum to {sum}, not 1"))?;
            }
        }
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str) -> String {
        serde_json::from_str::<BlendParams>(json).unwrap().check().unwrap_err().to_string()
    }

    #[test]
    fn bad_blends_name_their_key() {
        assert_eq!(check(r#"{"blends": {"b": {"routes": ["xgb", "zero"], "weights": [0.5]}}}"#), "blend.blends.b.weights: 1 weights for 2 routes [\"xgb\", \"zero\"]");
        assert!(check(r#"{"blends": {"b": {"routes": ["xgb", "zero"], "weights": [0.5, 0.6]}}}"#).starts_with("blend.blends.b.weights: [0.5, 0.6] sum to 1.1"));
        assert_eq!(check(r#"{"blends": {"a/b": {"routes": ["xgb"]}}}"#), "blend.blends.a/b: a blend name is letters, digits and `_` (it names files)");
        assert_eq!(check(r#"{"inner": {"draw": 0}}"#), "blend.inner.draw: must be at least 1");
        assert!(BlendParams::default().check().is_ok());
    }
}
