//! The training-cell filter's settings (config section `filter`).
use super::{ensure_named, ensure_unique, ParamGuard};
use crate::error::Result;

/// The positive controls of the Kaggle data: the default of `filter.drop_compounds`.
pub const POSITIVE_CONTROLS: [&str; 2] = ["Dabrafenib", "Belinostat"];

/// Which cells the generative models train on (config section `filter`; the DE stage keeps
/// every cell, as the official recipe does).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct FilterParams {
    /// Compounds whose cells are left out of model training (the positive controls); `[]` for a
    /// study without positive controls: an empty list drops nothing.
    pub drop_compounds: Vec<String>,
    /// Compounds with fewer cells than this (over all cell types) are left out of model
    /// training; 0 keeps all. The negative control is never dropped.
    pub min_cells: usize,
    /// Also leave `drop_compounds`' de_train rows out of what xgb (and the blends' inner
    /// hold-out) fit (the write-up's choice); false fits every de_train row.
    pub regressors: bool,
}

impl Default for FilterParams {
    fn default() -> Self {
        Self { drop_compounds: POSITIVE_CONTROLS.iter().map(|s| s.to_string()).collect(), min_cells: 0, regressors: true }
    }
}

impl ParamGuard for FilterParams {
    type Checked = FilterParams;
    const SECTION: &'static str = "filter";

    fn check(self) -> Result<FilterParams> {
        ensure_named(&self.drop_compounds, Self::SECTION, "drop_compounds")?;
        ensure_unique(&self.drop_compounds, Self::SECTION, "drop_compounds")?;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_list_drops_nothing_and_duplicates_are_refused() {
        let p: FilterParams = serde_json::from_str(r#"{"drop_compounds": []}"#).unwrap();
        assert!(p.clone().check().unwrap().drop_compounds.is_empty());
        let p: FilterParams = serde_json::from_str(r#"{"drop_compounds": ["A", "A"]}"#).unwrap();
        assert_eq!(p.check().unwrap_err().to_string(), "filter.drop_compounds: `A` is listed twice");
        assert_eq!(FilterParams::default().drop_compounds, ["Dabrafenib", "Belinostat"]);
    }
}
