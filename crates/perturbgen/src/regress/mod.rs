//! Regression routes on the DE values and pseudo-bulk counts (SPEC §4 "Regressors"), blends
//! of prediction tables, and the leaderboard of routes.
pub mod blend;
pub mod features;
pub mod forest;
pub mod leaderboard;
pub mod xgb;
pub mod xgboost;
