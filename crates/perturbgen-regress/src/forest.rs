//! `pgen-forest`: random forests (smartcore) on pseudo-bulk counts (SPEC §4 "Regressors":
//! "random forest on pseudo-bulk counts"). One-hot covariates of each training sample (cell
//! type, compound, donor, plate, row) → its log-CPM profile and log library size; the forests
//! predict one pseudo-bulk sample per (target pair, well where the compound was measured), and
//! the official limma recipe ([`perturbgen::limma::run_limma`]) turns the target cell type's real
//! samples plus the predicted ones into DE values.
//!
//! Outputs the forests learn (smartcore's forests are single-output, one forest per output):
//! - [`TargetKind::Genes`]: one per gene's log-CPM, `ln(1 + count / library · 1e6)`;
//! - [`TargetKind::Pca`]: one per principal component score of the centred log-CPM matrix
//!   (randomised subspace iteration, deterministic start), back-transformed;
//! - plus `ln(library size)` and `ln(n_cells)`.
//!
//! Determinism: each output's trees are cut into fixed shards of [`SHARD_TREES`] trees (the
//! layout depends on `n_trees` only), each shard seeded from (seed, output, shard); shards run
//! in parallel (rayon) and their predictions are averaged weighted by their tree counts in a
//! fixed order, so the bytes do not depend on the thread count.
use super::features::Pair;
use crate::error::{Error, Result};
use perturbgen::io::de_stats::DeStats;
use perturbgen::io::id_map::IdMap;
use perturbgen::limma::{de_against_predicted_controls, de_with_predicted, LimmaConfig};
use perturbgen::pseudobulk::{GroupKey, PseudoBulk};
pub use perturbgen::pca::pca;
use perturbgen::pca::mix;
use rayon::prelude::*;
use smartcore::ensemble::random_forest_regressor::{RandomForestRegressor, RandomForestRegressorParameters};
use smartcore::linalg::basic::matrix::DenseMatrix;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;

mod params;
pub use params::{FeatureColumn, ForestConfig, ForestParams, ForestReference, ForestTarget, TargetKind, FEATURE_COLUMNS};

/// Trees per shard: the unit of parallel work within one output's forest.
pub const SHARD_TREES: usize = 10;

fn key_value<'a>(k: &'a GroupKey, column: &str) -> &'a str {
    k.column(column).expect("feature columns are validated")
}

/// One-hot encoding of the chosen key columns; levels sorted per column, from the training samples.
#[derive(Debug, Clone)]
pub struct OneHot {
    pub columns: Vec<String>,
    pub levels: Vec<Vec<String>>,
    index: Vec<HashMap<String, usize>>,
    offsets: Vec<usize>,
}

impl OneHot {
    pub fn new(columns: &[String], train: &[GroupKey]) -> Self {
        let levels: Vec<Vec<String>> =
            columns.iter().map(|c| train.iter().map(|k| key_value(k, c).to_string()).collect::<BTreeSet<_>>().into_iter().collect()).collect();
        let index = levels.iter().map(|l| l.iter().enumerate().map(|(i, v)| (v.clone(), i)).collect()).collect();
        let mut offsets = Vec::new();
        let mut o = 0;
        for l in &levels {
            offsets.push(o);
            o += l.len();
        }
        Self { columns: columns.to_vec(), levels, index, offsets }
    }

    pub fn n_features(&self) -> usize {
        self.levels.iter().map(|l| l.len()).sum()
    }

    pub fn feature_names(&self) -> Vec<String> {
        self.columns.iter().zip(&self.levels).flat_map(|(c, l)| l.iter().map(move |v| format!("{c}={v}"))).collect()
    }

    /// Row-major rows × features; a level not seen in training gets no column (all zero).
    pub fn matrix(&self, keys: &[GroupKey]) -> Vec<f64> {
        let p = self.n_features();
        let mut out = vec![0.0; keys.len() * p];
        for (i, k) in keys.iter().enumerate() {
            for (c, col) in self.columns.iter().enumerate() {
                if let Some(&j) = self.index[c].get(key_value(k, col)) {
                    out[i * p + self.offsets[c] + j] = 1.0;
                }
            }
        }
        out
    }
}

/// What [`predict_pseudobulk`] returns.
#[derive(Debug, Clone)]
pub struct ForestPrediction {
    /// The training samples the forests were fitted on (the input minus the target pairs).
    pub train: PseudoBulk,
    /// One predicted sample per (target pair, well of its compound), targets in id_map order,
    /// wells sorted by plate and well; with `reference: predicted_controls` followed by one per
    /// negative-control well of each target cell type (its training samples' keys).
    pub predicted: PseudoBulk,
    /// Predicted log-CPM of the predicted samples (samples × genes), for inspection and tests.
    pub log_cpm: Vec<f64>,
}

/// Checks the inputs and returns the indices of the training samples kept (not a target pair).
fn check_inputs(pb: &PseudoBulk, pairs: &[Pair], negative_control: Option<&str>, pb_path: &Path, targets_path: &Path) -> Result<Vec<usize>> {
    if pb.n_samples() == 0 {
        return Err(Error::invalid(pb_path, "the pseudo-bulk has no samples: nothing to learn from"));
    }
    if pb.genes.is_empty() {
        return Err(Error::invalid(pb_path, "the pseudo-bulk has no gene columns"));
    }
    if pairs.is_empty() {
        return Err(Error::invalid(targets_path, "no target pairs to predict"));
    }
    let g = pb.genes.len();
    if let Some(pos) = pb.counts.iter().position(|v| !(v.is_finite() && *v >= 0.0)) {
        return Err(Error::bad_value(pb_path, (pos / g) as u64 + 1, &pb.genes[pos % g], "a count ≥ 0", pb.counts[pos].to_string()));
    }
    let target_set: HashSet<(&str, &str)> = pairs.iter().map(|(c, s)| (c.as_str(), s.as_str())).collect();
    let keep: Vec<usize> = (0..pb.n_samples()).filter(|&i| !target_set.contains(&(pb.keys[i].cell_type.as_str(), pb.keys[i].sm_name.as_str()))).collect();
    if keep.is_empty() {
        return Err(Error::invalid(pb_path, "every pseudo-bulk sample belongs to a target pair: nothing to learn from"));
    }
    for &i in &keep {
        if pb.sample(i).iter().sum::<f64>() <= 0.0 {
            return Err(Error::invalid(pb_path, format!("row {}: sample ({}, {} well {}) has no counts, so no log-CPM", i + 1, pb.keys[i].cell_type, pb.keys[i].plate_name, pb.keys[i].well)));
        }
    }
    let cell_types: HashSet<&str> = keep.iter().map(|&i| pb.keys[i].cell_type.as_str()).collect();
    let compounds: HashSet<&str> = keep.iter().map(|&i| pb.keys[i].sm_name.as_str()).collect();
    let controls: HashSet<&str> = match negative_control {
        Some(nc) => keep.iter().filter(|&&i| pb.keys[i].sm_name == nc).map(|&i| pb.keys[i].cell_type.as_str()).collect(),
        None => HashSet::new(),
    };
    for (row, (ct, cp)) in pairs.iter().enumerate() {
        if !compounds.contains(cp.as_str()) {
            return Err(Error::invalid(
                targets_path,
                format!("row {}: compound `{cp}` (cell type {ct}) was never measured in a training well of {} (outside the target pairs), so there is no well to predict", row + 1, pb_path.display()),
            ));
        }
        if !cell_types.contains(ct.as_str()) {
            return Err(Error::invalid(targets_path, format!("row {}: cell type `{ct}` (compound {cp}) has no training samples in {}", row + 1, pb_path.display())));
        }
        if let Some(nc) = negative_control {
            if !controls.contains(ct.as_str()) {
                return Err(Error::invalid(
                    targets_path,
                    format!("row {}: cell type `{ct}` has no negative-control (`{nc}`) samples in {}, which limma needs as the reference", row + 1, pb_path.display()),
                ));
            }
            if cp == nc {
                return Err(Error::invalid(targets_path, format!("row {}: the target compound is the negative control `{nc}`", row + 1)));
            }
        }
    }
    Ok(keep)
}

fn subset(pb: &PseudoBulk, rows: &[usize]) -> PseudoBulk {
    PseudoBulk {
        keys: rows.iter().map(|&i| pb.keys[i].clone()).collect(),
        n_cells: rows.iter().map(|&i| pb.n_cells[i]).collect(),
        genes: pb.genes.clone(),
        counts: rows.iter().flat_map(|&i| pb.sample(i).iter().copied()).collect(),
    }
}

fn shard_seed(seed: u64, output: usize, shard: usize) -> u64 {
    mix(mix(mix(seed) ^ output as u64) ^ shard as u64)
}

/// Fits one forest per column of `targets` (n × outputs, column-major: one Vec per output) on
/// `x` and predicts `xt`. Work = outputs × fixed shards, in parallel; deterministic.
#[allow(clippy::too_many_arguments)]
pub(crate) fn fit_forests(x: &[f64], n: usize, p: usize, xt: &[f64], nt: usize, targets: &[Vec<f64>], params: &ForestConfig, progress: &(dyn Fn() + Sync)) -> Result<Vec<Vec<f64>>> {
    let xm = DenseMatrix::new(n, p, x.to_vec(), false).map_err(|e| Error::Forest(format!("training matrix: {e}")))?;
    let xtm = DenseMatrix::new(nt, p, xt.to_vec(), false).map_err(|e| Error::Forest(format!("target matrix: {e}")))?;
    let n_shards = params.n_trees.div_ceil(SHARD_TREES);
    let mtry = params.mtry(p);
    let units: Vec<(usize, usize)> = (0..targets.len()).flat_map(|o| (0..n_shards).map(move |s| (o, s))).collect();
    let preds: Vec<Result<Vec<f64>>> = units
        .par_iter()
        .map(|&(o, s)| {
            let trees = SHARD_TREES.min(params.n_trees - s * SHARD_TREES);
            let mut rp = RandomForestRegressorParameters::default()
                .with_n_trees(trees)
                .with_m(mtry)
                .with_min_samples_leaf(params.min_samples_leaf)
                .with_min_samples_split(2 * params.min_samples_leaf)
                .with_seed(shard_seed(params.seed, o, s));
            if let Some(d) = params.max_depth {
                rp = rp.with_max_depth(d);
            }
            let out = RandomForestRegressor::fit(&xm, &targets[o], rp)
                .and_then(|f| f.predict(&xtm))
                .map(|v: Vec<f64>| v.into_iter().map(|x| x * trees as f64).collect())
                .map_err(|e| Error::Forest(format!("output {o}, shard {s}: {e}")));
            progress();
            out
        })
        .collect();
    let mut result = vec![vec![0.0; nt]; targets.len()];
    for ((o, _), pred) in units.iter().zip(preds) {
        for (r, v) in result[*o].iter_mut().zip(pred?) {
            *r += v;
        }
    }
    for r in &mut result {
        r.iter_mut().for_each(|v| *v /= params.n_trees as f64);
    }
    Ok(result)
}

/// Number of forest fits (outputs × shards) [`predict_pseudobulk`] will run, for a progress bar.
pub fn n_work_units(pb: &PseudoBulk, params: &ForestConfig) -> usize {
    let outputs = match params.target {
        TargetKind::Genes => pb.genes.len(),
        TargetKind::Pca { components } => components.min(pb.genes.len()).min(pb.n_samples()),
    } + 2;
    outputs * params.n_trees.div_ceil(SHARD_TREES)
}

/// Fits the forests on the training samples (minus the target pairs) and predicts the target
/// pairs' samples. `negative_control`, when given, is checked to exist in every target cell type.
pub fn predict_pseudobulk(
    pb: &PseudoBulk,
    targets: &IdMap,
    params: &ForestConfig,
    negative_control: Option<&str>,
    pb_path: &Path,
    targets_path: &Path,
    progress: &(dyn Fn() + Sync),
) -> Result<ForestPrediction> {
    let pairs: Vec<Pair> = targets.rows.iter().map(|r| (r.cell_type.clone(), r.sm_name.clone())).collect();
    let keep = check_inputs(pb, &pairs, negative_control, pb_path, targets_path)?;
    let train = subset(pb, &keep);
    let (n, g) = (train.n_samples(), train.genes.len());

    // The predicted samples: per target, the distinct (plate, well) where its compound was
    // measured in the training samples (any cell type), with that well's metadata.
    let mut wells_of: BTreeMap<&str, BTreeMap<(&str, &str), &GroupKey>> = BTreeMap::new();
    for k in &train.keys {
        wells_of.entry(k.sm_name.as_str()).or_default().entry((k.plate_name.as_str(), k.well.as_str())).or_insert(k);
    }
    let mut pred_keys = Vec::new();
    let mut seen = HashSet::new();
    for (ct, cp) in &pairs {
        if !seen.insert((ct, cp)) {
            continue;
        }
        for k in wells_of[cp.as_str()].values() {
            pred_keys.push(GroupKey { cell_type: ct.clone(), ..(*k).clone() });
        }
    }
    if params.reference == ForestReference::PredictedControls {
        let nc = negative_control.ok_or_else(|| Error::invalid(targets_path, "forest.reference predicted_controls needs the negative control's name"))?;
        let mut cell_types = HashSet::new();
        for (ct, _) in &pairs {
            if cell_types.insert(ct.as_str()) {
                pred_keys.extend(train.keys.iter().filter(|k| k.cell_type == *ct && k.sm_name == nc).cloned());
            }
        }
    }
    let nt = pred_keys.len();

    let onehot = OneHot::new(&params.features, &train.keys);
    let p = onehot.n_features();
    let x = onehot.matrix(&train.keys);
    let xt = onehot.matrix(&pred_keys);

    // Outputs: log-CPM per gene (or its PCs), log library size, log n_cells.
    let lib: Vec<f64> = (0..n).map(|i| train.sample(i).iter().sum()).collect();
    let log_cpm: Vec<f64> = (0..n).flat_map(|i| train.sample(i).iter().map(|&c| (c / lib[i] * 1e6).ln_1p()).collect::<Vec<_>>()).collect();
    let mut outputs: Vec<Vec<f64>> = Vec::new();
    let mut pca_parts = None;
    match params.target {
        TargetKind::Genes => {
            outputs.extend((0..g).map(|j| (0..n).map(|i| log_cpm[i * g + j]).collect()));
        }
        TargetKind::Pca { components } => {
            let mean: Vec<f64> = (0..g).map(|j| (0..n).map(|i| log_cpm[i * g + j]).sum::<f64>() / n as f64).collect();
            let centred: Vec<f64> = (0..n * g).map(|ij| log_cpm[ij] - mean[ij % g]).collect();
            let k = components.min(n).min(g);
            let (scores, loadings) = pca(&centred, n, g, k, params.seed);
            let total: f64 = centred.iter().map(|v| v * v).sum();
            let kept: f64 = scores.iter().map(|v| v * v).sum();
            log::info!("PCA: {k} components keep {:.1} % of the centred log-CPM variance", 100.0 * kept / total.max(1e-300));
            outputs.extend((0..k).map(|c| (0..n).map(|i| scores[i * k + c]).collect()));
            pca_parts = Some((mean, loadings, k));
        }
    }
    outputs.push(lib.iter().map(|l| l.ln()).collect());
    outputs.push(train.n_cells.iter().map(|&c| (c.max(1) as f64).ln()).collect());
    log::info!(
        "forests: {} outputs × {} trees (shards of {SHARD_TREES}), {n} training samples × {p} features ({}), m = {}, {} target pairs → {nt} predicted samples",
        outputs.len(),
        params.n_trees,
        params.features.join(", "),
        params.mtry(p),
        pairs.len()
    );
    let fitted = fit_forests(&x, n, p, &xt, nt, &outputs, params, progress)?;

    let fitted_ref = &fitted;
    let pred_lcpm: Vec<f64> = match &pca_parts {
        None => (0..nt).flat_map(|i| fitted[..g].iter().map(move |col| col[i])).collect(),
        Some((mean, loadings, k)) => (0..nt)
            .flat_map(|i| (0..g).map(move |j| mean[j] + (0..*k).map(|c| fitted_ref[c][i] * loadings[j * k + c]).sum::<f64>()))
            .collect(),
    };
    let n_out = fitted.len();
    let (pred_lib, pred_cells) = (&fitted[n_out - 2], &fitted[n_out - 1]);
    let mut counts = Vec::with_capacity(nt * g);
    for i in 0..nt {
        let size = pred_lib[i].exp();
        counts.extend(pred_lcpm[i * g..(i + 1) * g].iter().map(|&v| (v.exp_m1() * size / 1e6).max(0.0)));
    }
    let predicted = PseudoBulk { keys: pred_keys, n_cells: pred_cells.iter().map(|v| v.exp().round().max(1.0) as u64).collect(), genes: train.genes.clone(), counts };
    Ok(ForestPrediction { train, predicted, log_cpm: pred_lcpm })
}

/// The whole route: forests → predicted pseudo-bulk → limma per target cell type (its training
/// samples plus the predicted ones) → limma's statistics of the targets (route `forest`; their
/// [`DeStats::table`] is the prediction).
pub fn predict(
    pb: &PseudoBulk,
    targets: &IdMap,
    params: &ForestConfig,
    limma: &LimmaConfig,
    pb_path: &Path,
    targets_path: &Path,
    progress: &(dyn Fn() + Sync),
) -> Result<(DeStats, ForestPrediction)> {
    let prediction = predict_pseudobulk(pb, targets, params, Some(&limma.negative_control), pb_path, targets_path, progress)?;
    let mut stats = match params.reference {
        ForestReference::Real => de_with_predicted(&prediction.train, &prediction.predicted, targets, limma, pb_path)?,
        ForestReference::PredictedControls => de_against_predicted_controls(&prediction.train, &prediction.predicted, targets, limma, pb_path)?,
    };
    stats.route = "forest".into();
    Ok((stats, prediction))
}
