//! The library's error type. Every variant names the file it came from so that the one-line
//! message a user sees says where to look.
use std::path::PathBuf;

/// Everything the library can refuse or fail at.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a readable Parquet file ({source})")]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("{path}: cannot write the Parquet file ({source})")]
    ParquetWrite {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("{path}: {source}")]
    Arrow {
        path: PathBuf,
        #[source]
        source: arrow_schema::ArrowError,
    },
    #[error("{path}: line {line}: {message}")]
    Csv { path: PathBuf, line: u64, message: String },
    #[error("{path}: missing required column `{column}` (expected {expected})")]
    MissingColumn { path: PathBuf, column: String, expected: String },
    #[error("{path}: column `{column}` has type {found}, expected {expected}")]
    ColumnType { path: PathBuf, column: String, found: String, expected: String },
    /// `row` is 1-based over the data rows (the header of a CSV is not counted).
    #[error("{path}: row {row}, column `{column}`: expected {expected}, found {found}")]
    BadValue { path: PathBuf, row: u64, column: String, expected: String, found: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    /// A parameter (a config key or flag) outside its allowed values; `key` is its dotted config
    /// name (`xgb.eta`) or flag.
    #[error("{key}: {message}")]
    Param { key: String, message: String },
    /// Well-formed inputs that cannot serve the request: a hold-out pair without cells, a target
    /// cell type without negative-control samples, two tables claiming the same pair.
    #[error("{0}")]
    Data(String),
    /// R (limma/edgeR) could not be started or stopped with an error.
    #[error("{0}")]
    R(String),
    /// The worker pool of `threads` threads could not be started.
    #[error("cannot start {threads} worker threads: {source}")]
    Threads {
        threads: usize,
        #[source]
        source: rayon::ThreadPoolBuildError,
    },
    /// No font for the plots' text.
    #[error("{0}")]
    Font(String),
}

/// Errors name the output a user asked for, not the hidden temporary file it is written to.
fn public(path: impl Into<PathBuf>) -> PathBuf {
    crate::atomic::public_path(&path.into())
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn param(key: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Param { key: key.into(), message: message.into() }
    }
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: public(path), source }
    }
    pub fn parquet(path: impl Into<PathBuf>, source: parquet::errors::ParquetError) -> Self {
        Error::Parquet { path: public(path), source }
    }
    pub fn parquet_write(path: impl Into<PathBuf>, source: parquet::errors::ParquetError) -> Self {
        Error::ParquetWrite { path: public(path), source }
    }
    pub fn arrow(path: impl Into<PathBuf>, source: arrow_schema::ArrowError) -> Self {
        Error::Arrow { path: public(path), source }
    }
    pub fn invalid(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Invalid { path: public(path), message: message.into() }
    }
    pub fn bad_value(
        path: impl Into<PathBuf>,
        row: u64,
        column: &str,
        expected: impl Into<String>,
        found: impl Into<String>,
    ) -> Self {
        Error::BadValue {
            path: path.into(),
            row,
            column: column.to_string(),
            expected: expected.into(),
            found: found.into(),
        }
    }
}
