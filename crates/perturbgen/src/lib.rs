//! perturbgen: predicting single-cell responses to unseen drugs (Kaggle "Open Problems –
//! Single-Cell Perturbations" layout). This crate holds everything the `pgen-*` executables
//! share: the data model, readers and writers, the simulator, and (later) models and metrics.
pub mod atomic;
pub mod baseline;
pub mod categorical;
pub mod cells;
pub mod cli;
pub mod counts;
pub mod error;
pub mod filter;
pub mod ingest;
pub mod io;
pub mod limma;
pub mod model;
pub mod plot;
pub mod pca;
pub mod progress;
pub mod pseudobulk;
pub mod regress;
pub mod score;
pub mod simulate;
pub mod split;
pub mod stats;
pub mod threads;

pub use counts::CountMatrix;
pub use error::{Error, Result};
pub use io::obs::ObsTable;
