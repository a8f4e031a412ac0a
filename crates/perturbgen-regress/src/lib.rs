//! perturbgen's regression routes (SPEC §4 "Regressors"): XGBoost per gene on the DE values
//! (`xgb`, through XGBoost's C API in `xgboost`) and random forests (smartcore) on the
//! pseudo-bulk counts (`forest`). Blends and the leaderboard are in the core crate: they only
//! average and rank tables.
pub mod error;
pub mod features;
pub mod forest;
pub mod sizes;
pub mod target_sizes;
pub mod xgb;
pub mod xgboost;

pub use error::{Error, Result};
