//! `pgen-xgb`: one XGBoost regressor per gene on the DE values (SPEC §4 "Regressors"; public
//! board 0.62). Features: one-hot (cell type, compound) plus optional per-gene extras
//! ([`Extra`]). Genes are fitted in parallel (rayon, one single-threaded booster per gene).
use super::features::{check_training, target_pairs, Design, Extra};
use super::xgboost;
use crate::baseline::target_keys;
use crate::error::{Error, Result};
use crate::io::de_table::DeTable;
use crate::io::id_map::IdMap;
use rayon::prelude::*;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// Hyperparameters (XGBoost's names and defaults, `num_boost_round` = `rounds`).
#[derive(Debug, Clone, PartialEq)]
pub struct XgbParams {
    pub rounds: usize,
    pub eta: f64,
    pub max_depth: u32,
    pub min_child_weight: f64,
    pub subsample: f64,
    pub colsample_bytree: f64,
    pub lambda: f64,
    pub alpha: f64,
    pub gamma: f64,
    pub tree_method: String,
    pub seed: u64,
    /// Initial prediction (XGBoost's default is 0.5; DE values centre on 0).
    pub base_score: f64,
    /// Divide each training row by its cell type's root-mean-square DE value before fitting and
    /// multiply each prediction by its target cell type's: cell types measured with fewer cells
    /// (B, Myeloid) have weaker p-values, and the trees cannot learn a per-cell-type scale for
    /// compounds never measured in it.
    pub cell_type_scale: bool,
    /// Further `name=value` XGBoost parameters, set last.
    pub extra: Vec<(String, String)>,
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
            tree_method: "exact".into(),
            seed: 0,
            base_score: 0.0,
            cell_type_scale: false,
            extra: Vec::new(),
        }
    }
}

impl XgbParams {
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.rounds == 0 {
            return bad("xgb: rounds must be at least 1".into());
        }
        if !(self.eta > 0.0 && self.eta.is_finite()) {
            return bad(format!("xgb: eta must be > 0, found {}", self.eta));
        }
        if !["exact", "approx", "hist", "auto"].contains(&self.tree_method.as_str()) {
            return bad(format!("xgb: tree_method must be exact, approx, hist or auto, found `{}`", self.tree_method));
        }
        for (name, v) in [("subsample", self.subsample), ("colsample_bytree", self.colsample_bytree)] {
            if !(v > 0.0 && v <= 1.0) {
                return bad(format!("xgb: {name} must be in (0, 1], found {v}"));
            }
        }
        if !self.base_score.is_finite() {
            return bad(format!("xgb: base_score must be a number, found {}", self.base_score));
        }
        for (name, v) in [("min_child_weight", self.min_child_weight), ("lambda", self.lambda), ("alpha", self.alpha), ("gamma", self.gamma)] {
            if !(v >= 0.0 && v.is_finite()) {
                return bad(format!("xgb: {name} must be >= 0, found {v}"));
            }
        }
        Ok(())
    }

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
            ("tree_method", self.tree_method.clone()),
            ("seed", self.seed.to_string()),
            ("base_score", self.base_score.to_string()),
            ("verbosity", "1".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        p.extend(self.extra.iter().cloned());
        p
    }
}

/// Parses `name=value`.
pub fn parse_param(s: &str) -> Result<(String, String)> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(Error::Config(format!("XGBoost parameter `{s}`: expected name=value"))),
    }
}

/// Fits one model per gene on `de_train` and predicts every target pair. `progress` is called
/// once per finished gene.
pub fn predict(
    de_train: &DeTable,
    targets: &IdMap,
    params: &XgbParams,
    extras: &[Extra],
    de_train_path: &Path,
    targets_path: &Path,
    progress: &(dyn Fn() + Sync),
) -> Result<DeTable> {
    params.validate()?;
    check_training(de_train, de_train_path)?;
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
                    .map_err(|e| Error::Config(format!("gene `{}`: {e}", de_train.genes[g])));
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
        return Err(Error::Config("XGBoost failed on a gene".into()));
    }
    Ok(DeTable { keys, genes: de_train.genes.clone(), values })
}
