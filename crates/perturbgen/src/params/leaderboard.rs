//! The leaderboard's settings (config section `leaderboard`): the metric routes are ranked by,
//! the clip of their values, and the route whose submission is handed in.
use super::{ensure, ParamGuard};
use crate::clip::Clip;
use crate::error::Result;
use crate::score::Metric;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LeaderboardParams {
    /// The route whose submission is handed in (results/submission/submission.csv); null = the
    /// best-scoring route (xgb when the targets have no truth, e.g. the real id_map).
    pub submit: Option<String>,
    /// The column routes are ranked by, the best route is chosen by, and each route's clip is
    /// chosen by: mrrmse (Kaggle's) or mrrmse_clip4 (OP3's headline: truth clipped to ±4), or any
    /// other scores.csv metric.
    pub metric: Metric,
    /// Clips tried on a route's inner-hold-out run (null = no clip; each a positive bound); the
    /// best by `metric` is applied to the route's values before scoring and in its submission.
    /// `[null]` = never clip.
    pub clip: Vec<Option<f64>>,
    /// The clip of routes without an inner-hold-out run (the generative routes and blends over
    /// them): null = none.
    pub clip_without_inner: Option<f64>,
}

impl Default for LeaderboardParams {
    fn default() -> Self {
        Self { submit: None, metric: Metric::Mrrmse, clip: vec![None, Some(4.0), Some(2.0)], clip_without_inner: None }
    }
}

impl ParamGuard for LeaderboardParams {
    type Checked = LeaderboardParams;
    const SECTION: &'static str = "leaderboard";

    fn check(self) -> Result<LeaderboardParams> {
        let s = Self::SECTION;
        ensure(self.submit.as_deref().is_none_or(|r| !r.trim().is_empty()), s, "submit", || "an empty route name (null = the best-scoring route)".into())?;
        ensure(!self.clip.is_empty(), s, "clip", || "at least one candidate ([null] = never clip)".into())?;
        for (i, c) in self.clip.iter().enumerate() {
            ensure(Clip::new(*c).is_ok(), s, &format!("clip[{i}]"), || format!("{c:?}: a clip is a positive number or null"))?;
            ensure(!self.clip[..i].contains(c), s, &format!("clip[{i}]"), || "listed twice".into())?;
        }
        ensure(Clip::new(self.clip_without_inner).is_ok(), s, "clip_without_inner", || "a clip is a positive number or null".into())?;
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str) -> String {
        serde_json::from_str::<LeaderboardParams>(json).unwrap().check().unwrap_err().to_string()
    }

    #[test]
    fn bad_settings_name_their_key() {
        assert_eq!(check(r#"{"clip": []}"#), "leaderboard.clip: at least one candidate ([null] = never clip)");
        assert_eq!(check(r#"{"clip": [null, -1]}"#), "leaderboard.clip[1]: Some(-1.0): a clip is a positive number or null");
        assert_eq!(check(r#"{"clip": [4, 4]}"#), "leaderboard.clip[1]: listed twice");
        assert!(serde_json::from_str::<LeaderboardParams>(r#"{"metric": "rmse"}"#).is_err(), "row names are not overall metrics");
        let p: LeaderboardParams = serde_json::from_str(r#"{"metric": "mrrmse_clip4"}"#).unwrap();
        assert_eq!(p.check().unwrap().metric, Metric::MrrmseClip4);
    }
}
