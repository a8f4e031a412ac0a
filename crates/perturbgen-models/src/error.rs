//! The models crate's errors: the core's (files, parameters, data) plus candle's and training's.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Core(#[from] perturbgen::Error),
    /// A tensor operation failed (shapes, device, dtype).
    #[error("model: {0}")]
    Candle(#[from] candle_core::Error),
    /// Training diverged (a non-finite loss).
    #[error("{0}")]
    Diverged(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        perturbgen::Error::io(path, source).into()
    }
    pub fn invalid(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        perturbgen::Error::invalid(path, message).into()
    }
    pub fn param(key: impl Into<String>, message: impl Into<String>) -> Self {
        perturbgen::Error::param(key, message).into()
    }
    pub fn data(message: impl Into<String>) -> Self {
        perturbgen::Error::Data(message.into()).into()
    }
}
