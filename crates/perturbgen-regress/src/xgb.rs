//! `pgen-xgb`: one XGBoost regressor per gene on the DE values (SPEC §4 "Regressors"; public
//! board 0.62). Features: one-hot (cell type, compound) plus optional per-gene extras
//! ([`Extra`]). Genes are fitted in parallel (rayon, one single-threaded booster per gene).
use super::features::{check_training, target_pairs, Design, Extra};
use super::xgboost;
use perturbgen::baseline::target_keys;
use crate::error::{Error, Result};
use perturbgen::io::de_table::DeTable;
use perturbgen::io::id_map::IdMap;
use rayon::prelude::*;
use perturbgen::params::{ensure, ParamGuard};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// XGBoost's tree construction algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TreeMethod {
    Exact,
    Approx,
    Hist,
    Auto,
}

impl TreeMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            TreeMethod::Exact => "exact",
            TreeMethod::Approx => "approx",
            TreeMethod::Hist => "hist",
            TreeMethod::Auto => "auto",
        }
    }
}

/// XGBoost on the DE values (`pgen-xgb`, config section `xgb`): one regressor per gene on
/// one-hot (cell type, compound) and optional per-gene extras. XGBoost's own names; defaults
/// are XGBoost's except `base_score`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct XgbParams {
    /// Boosting rounds (`num_boost_round`), at least 1.
    pub rounds: usize,
    /// Learning rate, > 0.
    pub eta: f64,
    /// Maximum tree depth.
    pub max_depth: u32,
    /// Minimum sum of instance weight in a child, ≥ 0.
    pub min_child_weight: f64,
    /// Row subsampling per tree, in (0, 1].
    pub subsample: f64,
    /// Column subsampling per tree, in (0, 1].
    pub colsample_bytree: f64,
    /// L2 regularisation (`reg_lambda`), ≥ 0.
    pub lambda: f64,
    /// L1 regularisation (`reg_alpha`), ≥ 0.
    pub alpha: f64,
    /// Minimum loss reduction to split, ≥ 0.
    pub gamma: f64,
    pub tree_method: TreeMethod,
    pub seed: u64,
    /// Initial prediction (XGBoost's default is 0.5; DE values centre on 0).
    pub base_score: f64,
    /// Divide each training row by its cell type's root-mean-square DE value before fitting and
    /// multiply each prediction by its target cell type's: cell types measured with fewer cells
    /// (B, Myeloid) have weaker p-values, and the trees cannot learn a per-cell-type scale for
    /// compounds never measured in it.
    pub cell_type_scale: bool,
    /// Extra per-gene features: `compound_mean` (the compound's mean DE for the gene over its
    /// other measured cell types) and/or `cell_type_mean` (the cell type's over its other
    /// compounds).
    pub features: Vec<Extra>,
    /// Clip the training values to ±clip_train before fitting (null = the raw values). OP3 scores
    /// against the truth clipped to ±4: trees fitted to clipped values aim where it is scored.
    pub clip_train: Option<f64>,
    /// Any other XGBoost parameter, `name: value`, set last.
    pub params: BTreeMap<String, ParamValue>,
}

/// A free-form XGBoost parameter value, handed to XGBoost as text.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum ParamValue {
    Bool(bool),
    Integer(i64),
    Number(f64),
    Text(String),
}

impl std::fmt::Display for ParamValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParamValue::Bool(b) => write!(f, "{b}"),
            ParamValue::Integer(i) => write!(f, "{i}"),
            ParamValue::Number(x) => write!(f, "{x}"),
            ParamValue::Text(s) => f.write_str(s),
        }
    }
}

impl Default for XgbParams {
    fn default() -> Self {
        Self {
            rounds: 100,
            eta: 0.3,
            max_depth: 6,
            min_child_weight: 1.0,
            subsample: 1.0,
            colsample_bytree: 1.0,
            lambda: 1.0,
            alpha: 0.0,
            gamma: 0.0,
            tree_method: TreeMethod::Exact,
            seed: 0,
            base_score: 0.0,
            cell_type_scale: false,
            features: Vec::new(),
            clip_train: None,
            params: BTreeMap::new(),
        }
    }
}

/// Checked [`XgbParams`]: the only form [`predict`] takes.
#[derive(Debug, Clone, PartialEq)]
pub struct XgbConfig {
    params: XgbParams,
}

impl std::ops::Deref for XgbConfig {
    type Target = XgbParams;
    fn deref(&self) -> &XgbParams {
        &self.params
    }
}

impl ParamGuard for XgbParams {
    type Checked = XgbConfig;
    const SECTION: &'static str = "xgb";

    fn check(self) -> perturbgen::Result<XgbConfig> {
        let s = Self::SECTION;
        ensure(self.rounds >= 1, s, "rounds", || "must be at least 1".into())?;
        ensure(self.eta > 0.0 && self.eta.is_finite(), s, "eta", || format!("must be > 0, found {}", self.eta))?;
        for (name, v) in [("subsample", self.subsample), ("colsample_bytree", self.colsample_bytree)] {
            ensure(v > 0.0 && v <= 1.0, s, name, || format!("must be in (0, 1], found {v}"))?;
        }
        ensure(self.base_score.is_finite(), s, "base_score", || format!("must be a number, found {}", self.base_score))?;
        for (name, v) in [("min_child_weight", self.min_child_weight), ("lambda", self.lambda), ("alpha", self.alpha), ("gamma", self.gamma)] {
            ensure(v >= 0.0 && v.is_finite(), s, name, || format!("must be >= 0, found {v}"))?;
        }
        ensure(self.clip_train.is_none_or(|c| c > 0.0 && c.is_finite()), s, "clip_train", || format!("must be a positive number or null, found {:?}", self.clip_train))?;
        let mut seen = Vec::new();
        for f in &self.features {
            ensure(!seen.contains(f), s, "features", || format!("`{}` is given twice", f.name()))?;
            seen.push(*f);
        }
        for name in self.params.keys() {
            let key = format!("params.{name}");
            ensure(!TYPED_PARAMS.contains(&name.as_str()), s, &key, || format!("set `xgb.{}` instead", typed_key(name)))?;
            ensure(name != "nthread" && name != "n_jobs", s, &key, || "threads come from --threads (threads.xgb): genes run in parallel, each booster on one thread".into())?;
            ensure(XGBOOST_PARAMS.contains(&name.as_str()), s, &key, || "not an XGBoost 1.6 parameter (it would be ignored; see https://xgboost.readthedocs.io/en/release_1.6.0/parameter.html)".into())?;
        }
        Ok(XgbConfig { params: self })
    }
}

/// Parameters with a typed key of their own (and their XGBoost aliases).
const TYPED_PARAMS: [&str; 17] = [
    "eta", "learning_rate", "max_depth", "min_child_weight", "subsample", "colsample_bytree", "lambda", "reg_lambda", "alpha",
    "reg_alpha", "gamma", "min_split_loss", "tree_method", "seed", "random_state", "base_score", "objective",
];

fn typed_key(name: &str) -> &str {
    match name {
        "learning_rate" => "eta",
        "reg_lambda" => "lambda",
        "reg_alpha" => "alpha",
        "min_split_loss" => "gamma",
        "random_state" => "seed",
        "objective" => "(objective: fixed to reg:squarederror)",
        other => other,
    }
}

/// XGBoost 1.6's other booster and learning-task parameters (the version xgboost-rs-sys
/// vendors). XGBoost itself only warns about a name it does not use and trains on: a typo in a
/// sweep would go unnoticed, so `xgb.params` keys are checked against this list.
const XGBOOST_PARAMS: [&str; 40] = [
    "booster", "verbosity", "validate_parameters", "disable_default_eval_metric", "max_delta_step", "sampling_method",
    "colsample_bylevel", "colsample_bynode", "sketch_eps", "scale_pos_weight", "updater", "refresh_leaf", "process_type",
    "grow_policy", "max_leaves", "max_bin", "predictor", "num_parallel_tree", "monotone_constraints",
    "interaction_constraints", "single_precision_histogram", "deterministic_histogram", "max_cat_to_onehot", "gpu_id",
    "sample_type", "normalize_type", "rate_drop", "one_drop", "skip_drop", "feature_selector", "top_k", "eval_metric",
    "seed_per_iteration", "tweedie_variance_power", "huber_slope", "aft_loss_distribution", "aft_loss_distribution_scale",
    "num_class", "lambda_bias", "quantile_alpha",
];

impl XgbConfig {
    /// The booster parameters, in the order they are set (`nthread` = 1: genes run in parallel).
    pub fn booster_params(&self) -> Vec<(String, String)> {
        let mut p: Vec<(String, String)> = [
            ("objective", "reg:squarederror".to_string()),
            ("nthread", "1".into()),
            ("eta", self.eta.to_string()),
            ("max_depth", self.max_depth.to_string()),
            ("min_child_weight", self.min_child_weight.to_string()),
            ("subsample", self.subsample.to_string()),
            ("colsample_bytree", self.colsample_bytree.to_string()),
            ("lambda", self.lambda.to_string()),
            ("alpha", self.alpha.to_string()),
            ("gamma", self.gamma.to_string()),
            ("tree_method", self.tree_method.as_str().to_string()),
            ("seed", self.seed.to_string()),
            ("base_score", self.base_score.to_string()),
            ("verbosity", "1".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        p.extend(self.params.params.iter().map(|(k, v)| (k.clone(), v.to_string())));
        p
    }
}

/// Fits one model per gene on `de_train` and predicts every target pair. `progress` is called
/// once per finished gene.
pub fn predict(
    de_train: &DeTable,
    targets: &IdMap,
    params: &XgbConfig,
    de_train_path: &Path,
    targets_path: &Path,
    progress: &(dyn Fn() + Sync),
) -> Result<DeTable> {
    check_training(de_train, de_train_path)?;
    let clipped;
    let de_train = match params.clip_train {
        Some(c) => {
            let mut t = de_train.clone();
            perturbgen::clip::Clip(Some(c)).apply(&mut t);
            clipped = t;
            &clipped
        }
        None => de_train,
    };
    let extras = &params.features[..];
    let pairs = target_pairs(targets);
    let design = Design::new(de_train, &pairs, extras, de_train_path, targets_path)?;
    let keys = target_keys(targets, de_train, de_train_path)?;
    let booster_params = params.booster_params();
    let (n, nt, ng, p) = (de_train.n_rows(), pairs.len(), de_train.genes.len(), design.n_features());
    log::info!(
        "XGBoost {}.{}.{}: {ng} genes × {n} training rows × {p} features ({} cell types, {} compounds, extras {:?}), {nt} targets, {} rounds",
        xgboost::version().0,
        xgboost::version().1,
        xgboost::version().2,
        design.cell_types.len(),
        design.compounds.len(),
        extras.iter().map(|e| e.name()).collect::<Vec<_>>(),
        params.rounds
    );
    // Per-cell-type scale (1 without cell_type_scale).
    let scale_of = |ct: &str| -> f64 {
        if !params.cell_type_scale {
            return 1.0;
        }
        let (mut ss, mut n) = (0.0, 0usize);
        for (i, k) in de_train.keys.iter().enumerate() {
            if k.cell_type == ct {
                ss += de_train.row(i).iter().map(|v| v * v).sum::<f64>();
                n += ng;
            }
        }
        let rms = (ss / n.max(1) as f64).sqrt();
        if rms > 0.0 { rms } else { 1.0 }
    };
    let train_scale: Vec<f64> = de_train.keys.iter().map(|k| scale_of(&k.cell_type)).collect();
    let target_scale: Vec<f64> = pairs.iter().map(|(ct, _)| scale_of(ct)).collect();
    if params.cell_type_scale {
        let mut by_ct: Vec<(&str, f64)> = de_train.keys.iter().zip(&train_scale).map(|(k, s)| (k.cell_type.as_str(), *s)).collect();
        by_ct.dedup_by(|a, b| a.0 == b.0);
        log::info!("cell-type scales (RMS of de_train values): {by_ct:?}");
    }
    // Fail fast: the first error stops the other genes.
    let failed = AtomicBool::new(false);
    let columns: Vec<Result<Vec<f32>>> = (0..ng)
        .into_par_iter()
        .map_init(
            || (Vec::new(), Vec::new(), Vec::new()),
            |(x, xt, y): &mut (Vec<f32>, Vec<f32>, Vec<f32>), g| {
                if failed.load(Ordering::Relaxed) {
                    return Ok(Vec::new());
                }
                design.matrix_for_gene(de_train, g, true, x);
                design.matrix_for_gene(de_train, g, false, xt);
                y.clear();
                y.extend((0..n).map(|i| (de_train.values[i * ng + g] / train_scale[i]) as f32));
                let out = xgboost::fit_predict(x, y, p, xt, &booster_params, params.rounds)
                    .map_err(|e| match e {
                        Error::Xgboost(m) => Error::Xgboost(format!("gene `{}`: {m}", de_train.genes[g])),
                        e => e,
                    });
                if out.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                progress();
                out
            },
        )
        .collect();
    let mut values = vec![0f64; nt * ng];
    for (g, col) in columns.into_iter().enumerate() {
        let col = col?;
        if col.len() != nt {
            // Skipped after another gene failed; that error is reported above in gene order.
            continue;
        }
        for (i, v) in col.into_iter().enumerate() {
            values[i * ng + g] = v as f64 * target_scale[i];
        }
    }
    if failed.load(Ordering::Relaxed) {
        return Err(Error::Xgboost("failed on a gene".into()));
    }
    Ok(DeTable { keys, genes: de_train.genes.clone(), values })
}
