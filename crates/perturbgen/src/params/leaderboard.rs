//! The leaderboard's settings (config section `leaderboard`).
use super::{ensure, ParamGuard};
use crate::error::Result;

/// Which route's submission is handed in (config section `leaderboard`).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LeaderboardParams {
    /// The route whose submission is handed in (results/submission/submission.csv); null = the
    /// best-scoring route (xgb when the targets have no truth, e.g. the real id_map).
    pub submit: Option<String>,
}

impl ParamGuard for LeaderboardParams {
    type Checked = LeaderboardParams;
    const SECTION: &'static str = "leaderboard";

    fn check(self) -> Result<LeaderboardParams> {
        ensure(self.submit.as_deref().is_none_or(|r| !r.trim().is_empty()), Self::SECTION, "submit", || "an empty route name (null = the best-scoring route)".into())?;
        Ok(self)
    }
}
