//! The `forest` config section: [`ForestParams`], its defaults and checks, and the checked [`ForestConfig`] the fitting code takes.
use perturbgen::params::{ensure, ParamGuard};
use std::collections::HashSet;

/// Pseudo-bulk key columns that can be one-hot features.
pub const FEATURE_COLUMNS: [&str; 6] = ["cell_type", "sm_name", "donor_id", "plate_name", "row", "well"];

/// What the forests are fitted on (config `forest.target`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ForestTarget {
    /// One forest per gene's log-CPM.
    Genes,
    /// One forest per principal component of the centred log-CPM matrix (top `components`).
    Pca,
}

/// What the predicted target samples are contrasted with in limma (config `forest.reference`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ForestReference {
    /// The target cell type's real negative-control samples.
    #[default]
    Real,
    /// The forests' own predictions of the target cell type's negative-control wells; the real
    /// samples stay in the fit for the variance ([`perturbgen::limma::de_against_predicted_controls`]).
    PredictedControls,
}

/// A pseudo-bulk key column that can be a one-hot feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FeatureColumn {
    CellType,
    SmName,
    DonorId,
    PlateName,
    Row,
    Well,
}

impl FeatureColumn {
    pub fn name(self) -> &'static str {
        FEATURE_COLUMNS[self as usize]
    }
}

/// Random forests on the pseudo-bulk counts (`pgen-forest`, config section `forest`).
/// Defaults: 100 trees, m = ⌈p/3⌉ as for regression forests in R's randomForest, unlimited
/// depth, leaves of ≥ 3 samples (as good as 1 on the demo's inner hold-out, 0.8185 vs 0.8178,
/// and 28 % faster). smartcore's own defaults (10 trees, m = √p even for regression) are not
/// used: every value is set here.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ForestParams {
    /// `genes`: one forest per gene's log-CPM; `pca`: one per principal component (top
    /// `components`) of the centred log-CPM. Measured on the demo's inner hold-out (MRRMSE,
    /// 100 trees, m = p/3): genes 0.818, pca 50/100/200 components 1.005/0.991/0.904. PCA is
    /// ~10× faster but the components mix cell-type and compound loadings; it is the option for
    /// Kaggle size (18,211 genes), where one forest per gene takes hours.
    pub target: ForestTarget,
    /// Principal components (`target: pca`), at least 1.
    pub components: usize,
    /// Pseudo-bulk key columns one-hot encoded as features, each at most once.
    pub features: Vec<FeatureColumn>,
    /// Trees per forest, at least 1.
    pub n_trees: usize,
    /// Features tried per split as a fraction of p (rounded up, at least 1), in (0, 1].
    pub m_fraction: f64,
    /// Features tried per split (overrides `m_fraction`); null = use `m_fraction`.
    pub m: Option<usize>,
    /// Maximum tree depth; null = unlimited.
    pub max_depth: Option<u16>,
    /// Minimum samples per leaf, at least 1.
    pub min_samples_leaf: usize,
    pub seed: u64,
    /// `real`: the predicted target samples against the target cell type's real
    /// negative-control samples; `predicted_controls`: against the forests' predictions of those
    /// control wells, so that what the forests get wrong about the cell type as a whole cancels
    /// (the real samples stay in limma's fit for the variance).
    pub reference: ForestReference,
}

impl Default for ForestParams {
    fn default() -> Self {
        use FeatureColumn::*;
        Self {
            target: ForestTarget::Genes,
            components: 50,
            // The sample's covariates except the well: a well is one compound on one plate, so
            // it adds nothing the compound and plate do not say.
            features: vec![CellType, SmName, DonorId, PlateName, Row],
            n_trees: 100,
            m_fraction: 1.0 / 3.0,
            m: None,
            max_depth: None,
            min_samples_leaf: 3,
            seed: 0,
            reference: ForestReference::Real,
        }
    }
}

/// What the fitting code works on: [`TargetKind::Pca`] carries its component count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    Genes,
    Pca { components: usize },
}

/// Checked [`ForestParams`]: the only form the fitting code takes (the parameters, with the
/// target and the feature names in the form the fitting code uses).
#[derive(Debug, Clone, PartialEq)]
pub struct ForestConfig {
    params: ForestParams,
    pub target: TargetKind,
    /// Feature column names, in the order given.
    pub features: Vec<String>,
}

impl std::ops::Deref for ForestConfig {
    type Target = ForestParams;
    fn deref(&self) -> &ForestParams {
        &self.params
    }
}

impl ParamGuard for ForestParams {
    type Checked = ForestConfig;
    const SECTION: &'static str = "forest";

    fn check(self) -> perturbgen::Result<ForestConfig> {
        let s = Self::SECTION;
        ensure(self.n_trees >= 1, s, "n_trees", || "must be at least 1".into())?;
        ensure(self.m_fraction > 0.0 && self.m_fraction <= 1.0, s, "m_fraction", || format!("must be in (0, 1], found {}", self.m_fraction))?;
        ensure(self.m != Some(0), s, "m", || "must be at least 1 (or null)".into())?;
        ensure(self.max_depth != Some(0), s, "max_depth", || "must be at least 1 (or null)".into())?;
        ensure(self.min_samples_leaf >= 1, s, "min_samples_leaf", || "must be at least 1".into())?;
        ensure(self.components >= 1, s, "components", || "must be at least 1".into())?;
        ensure(!self.features.is_empty(), s, "features", || "at least one feature column is needed".into())?;
        let mut seen = HashSet::new();
        for f in &self.features {
            ensure(seen.insert(*f), s, "features", || format!("feature column `{}` given twice", f.name()))?;
        }
        Ok(ForestConfig {
            target: match self.target {
                ForestTarget::Genes => TargetKind::Genes,
                ForestTarget::Pca => TargetKind::Pca { components: self.components },
            },
            features: self.features.iter().map(|f| f.name().to_string()).collect(),
            params: self,
        })
    }
}

impl ForestConfig {
    /// Features tried per split for `p` features.
    pub fn mtry(&self, p: usize) -> usize {
        self.m.unwrap_or_else(|| (self.m_fraction * p as f64).ceil() as usize).clamp(1, p.max(1))
    }
}
