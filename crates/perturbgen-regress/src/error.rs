//! The regression crate's errors: the core's (files, parameters, data) plus what XGBoost and
//! smartcore can fail at.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Core(#[from] perturbgen::Error),
    /// XGBoost's C API refused a call (its own message, and what was being done).
    #[error("XGBoost: {0}")]
    Xgboost(String),
    /// smartcore could not build a matrix or fit a forest.
    #[error("random forest: {0}")]
    Forest(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        perturbgen::Error::invalid(path, message).into()
    }
    pub fn bad_value(path: impl Into<PathBuf>, row: u64, column: &str, expected: impl Into<String>, found: impl Into<String>) -> Self {
        perturbgen::Error::bad_value(path, row, column, expected, found).into()
    }
    pub fn param(key: impl Into<String>, message: impl Into<String>) -> Self {
        perturbgen::Error::param(key, message).into()
    }
}
