//! perturbgen: predicting single-cell responses to unseen drugs (Kaggle "Open Problems –
//! Single-Cell Perturbations" layout). The core crate: the data model, readers and writers,
//! pseudo-bulk, the limma bridge, scoring, blends and the simulator. The heavy dependencies live
//! in their own crates: `perturbgen-models` (candle), `perturbgen-regress` (XGBoost,
//! smartcore) and `perturbgen-cli` (clap, logging), so each `pgen-*` links only what it uses.
pub mod atomic;
pub mod baseline;
pub mod blend;
pub mod categorical;
pub mod cells;
pub mod clip;
pub mod config_check;
pub mod counts;
pub mod design;
pub mod error;
pub mod external;
pub mod filter;
pub mod halves;
pub mod ingest;
pub mod io;
pub mod leaderboard;
pub mod limma;
pub mod metrics;
pub mod plot;
pub mod params;
pub mod pca;
pub mod progress;
pub mod pseudobulk;
pub mod score;
pub mod simulate;
pub mod split;
pub mod stats;
pub mod target_plots;
pub mod threads;

pub use counts::CountMatrix;
pub use error::{Error, Result};
pub use io::obs::ObsTable;
