//! The DE recipe's settings (config section `de`), shared by every stage that runs limma
//! (pgen-limma, pgen-forest, pgen-generate) and by those that need the negative control
//! (pgen-split, pgen-filter).
use super::{ensure, ParamGuard};
use crate::design::Design;
use crate::error::Result;
use std::path::PathBuf;

/// The negative control of the Kaggle data (every contrast's reference). Declared once: the
/// default of `de.negative_control`.
pub const DMSO: &str = "Dimethyl Sulfoxide";

/// The official limma recipe's settings (config section `de`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DeParams {
    /// Use `<input.kaggle_dir>/de_train.parquet` instead of recomputing de_train (source kaggle only).
    pub use_existing_de_train: bool,
    /// The compound every contrast is against (its cells are the reference).
    pub negative_control: String,
    /// limma's model formula: `~0+Rpert` then sample columns (donor_id, plate_name, row, well,
    /// library_id or an obs column of the study), joined by `+`.
    pub design: String,
    /// The Rscript executable that runs scripts/limma_de.R (a name on PATH or a path).
    pub rscript: PathBuf,
}

impl Default for DeParams {
    fn default() -> Self {
        Self { use_existing_de_train: false, negative_control: DMSO.to_string(), design: "~0+Rpert+donor_id+plate_name+row".to_string(), rscript: PathBuf::from("Rscript") }
    }
}

/// Checked [`DeParams`]: the design parsed as a formula.
#[derive(Debug, Clone)]
pub struct DeConfig {
    pub use_existing_de_train: bool,
    pub negative_control: String,
    pub design: Design,
    pub rscript: PathBuf,
}

impl ParamGuard for DeParams {
    type Checked = DeConfig;
    const SECTION: &'static str = "de";

    fn check(self) -> Result<DeConfig> {
        let s = Self::SECTION;
        ensure(!self.negative_control.trim().is_empty(), s, "negative_control", || "must name a compound".into())?;
        ensure(!self.rscript.as_os_str().is_empty(), s, "rscript", || "must name the Rscript executable".into())?;
        Ok(DeConfig {
            design: Design::parse(&self.design, "de.design")?,
            use_existing_de_train: self.use_existing_de_train,
            negative_control: self.negative_control,
            rscript: self.rscript,
        })
    }
}

impl DeConfig {
    /// The limma bridge's settings: these, the recipe's R script and a thread count.
    pub fn limma(&self, script: PathBuf, threads: usize) -> crate::limma::LimmaConfig {
        crate::limma::LimmaConfig { rscript: self.rscript.clone(), script, design: self.design.clone(), negative_control: self.negative_control.clone(), threads }
    }
}
