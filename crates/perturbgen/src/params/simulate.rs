//! The simulator's settings (config section `simulate`).
use super::{ensure, ParamGuard};
use crate::error::Result;
use crate::simulate::config::{Preset, SimConfig};
use std::path::PathBuf;

/// What pgen-simulate makes (config section `simulate`): a preset and optional overrides of
/// its sizes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SimulateParams {
    /// demo (small, seconds), kaggle (the competition's shape) or study (a stimulation study:
    /// one plate per donor, one well per condition, no positive controls).
    pub preset: Preset,
    pub seed: u64,
    /// A folder with the real Kaggle layout files (genes.txt, id_map.csv, de_train_rows.csv,
    /// test_pair_wells_and_sizes.csv): real gene names, compounds, wells and test pairs.
    pub layout: Option<PathBuf>,
    /// Expected number of training cells; null = the preset's.
    pub cells: Option<usize>,
    /// Number of genes (not used with `layout`); null = the preset's.
    pub genes: Option<usize>,
    /// Compounds besides the controls (even; not used with `layout`); with the study preset the
    /// number of stimuli (1 to 11); null = the preset's.
    pub compounds: Option<usize>,
    /// Donors (each with its own plates); null = the preset's.
    pub donors: Option<usize>,
}

impl Default for SimulateParams {
    fn default() -> Self {
        Self { preset: Preset::Demo, seed: 0, layout: None, cells: None, genes: None, compounds: None, donors: None }
    }
}

impl ParamGuard for SimulateParams {
    type Checked = SimConfig;
    const SECTION: &'static str = "simulate";

    fn check(self) -> Result<SimConfig> {
        let s = Self::SECTION;
        for (key, value) in [("cells", self.cells), ("genes", self.genes), ("compounds", self.compounds), ("donors", self.donors)] {
            ensure(value != Some(0), s, key, || "must be at least 1 (or null: the preset's)".into())?;
        }
        let mut config = SimConfig::preset(self.preset);
        config.seed = self.seed;
        config.layout_dir = self.layout;
        config.n_train_cells = self.cells.unwrap_or(config.n_train_cells);
        config.n_genes = self.genes.unwrap_or(config.n_genes);
        config.n_compounds = self.compounds.unwrap_or(config.n_compounds);
        config.n_donors = self.donors.unwrap_or(config.n_donors);
        Ok(config)
    }
}
