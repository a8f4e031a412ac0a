//! The noise ceiling's settings (config section `ceiling`).
use super::ParamGuard;
use crate::error::Result;

/// The noise ceiling: limma on one half of every pseudo-bulk sample's cells scored against
/// limma on the other half (results/scores/ceiling.csv; pgen-pseudobulk --half). Needs a truth
/// for the targets (split mode holdout, or simulated input).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CeilingParams {
    /// Compute the ceiling (two more pseudo-bulks and a limma job per target cell type per
    /// half).
    pub enabled: bool,
    /// Seed of the split of each sample's cells into the two halves.
    pub seed: u64,
}

impl Default for CeilingParams {
    fn default() -> Self {
        Self { enabled: true, seed: 0 }
    }
}

impl ParamGuard for CeilingParams {
    type Checked = CeilingParams;
    const SECTION: &'static str = "ceiling";

    /// Nothing beyond the types: any seed, either switch.
    fn check(self) -> Result<CeilingParams> {
        Ok(self)
    }
}
