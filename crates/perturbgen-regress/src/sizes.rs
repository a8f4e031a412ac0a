//! The size forests of the generative route (SPEC §4, `pgen-sizes`): per measured (cell type,
//! plate, well) group outside the control wells, two random forests (smartcore, through
//! [`crate::forest`]'s sharded fitting) learn the number of cells and the median per-cell scale
//! from one-hot (cell type, plate, well), and predict both for every target group: each plate ×
//! well where a target compound was applied (known from other cell types' cells) crossed with
//! the target cell type. The fit is judged on a held-out part of the training groups (R²).
use crate::error::{Error, Result};
use crate::forest::{fit_forests, ForestParams, OneHot};
use perturbgen::io::id_map::IdMap;
use perturbgen::io::sizes::{CellScale, SizeRow, SizeTable};
use perturbgen::params::{ensure, ParamGuard};
use perturbgen::pseudobulk::GroupKey;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::collections::BTreeSet;
use std::path::Path;

/// The size forests (config section `sizes`). Defaults: the write-up's 1,000 trees, counts
/// clipped to at least 5 cells.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SizesParams {
    /// Trees per forest (two forests: cells per group, median scale), at least 1.
    pub n_trees: usize,
    /// Maximum tree depth; null = unlimited.
    pub max_depth: Option<u16>,
    /// Minimum groups per leaf, at least 1.
    pub min_samples_leaf: usize,
    /// Features tried per split as a fraction of the one-hot columns, in (0, 1].
    pub m_fraction: f64,
    pub seed: u64,
    /// Predicted cell counts are clipped to at least this many cells (the write-up: 5).
    pub min_cells: usize,
    /// Fraction of the training groups held out to report R² (the final forests use all), in [0, 0.9].
    pub validation_fraction: f64,
    /// The per-cell statistic whose group median is predicted: the models' `scale` (max, sum, mean).
    pub scale: CellScale,
}

impl Default for SizesParams {
    fn default() -> Self {
        Self { n_trees: 1000, max_depth: None, min_samples_leaf: 1, m_fraction: 1.0 / 3.0, seed: 0, min_cells: 5, validation_fraction: 0.2, scale: CellScale::Max }
    }
}

/// Checked [`SizesParams`] (and the forest settings they imply).
#[derive(Debug, Clone)]
pub struct SizesConfig {
    pub params: SizesParams,
    forest: crate::forest::ForestConfig,
}

impl ParamGuard for SizesParams {
    type Checked = SizesConfig;
    const SECTION: &'static str = "sizes";

    fn check(self) -> perturbgen::Result<SizesConfig> {
        let s = Self::SECTION;
        ensure(self.n_trees >= 1, s, "n_trees", || "must be at least 1".into())?;
        ensure(self.min_samples_leaf >= 1, s, "min_samples_leaf", || "must be at least 1".into())?;
        ensure(self.m_fraction > 0.0 && self.m_fraction <= 1.0, s, "m_fraction", || format!("must be in (0, 1], found {}", self.m_fraction))?;
        ensure(self.max_depth != Some(0), s, "max_depth", || "must be at least 1 (or null)".into())?;
        ensure(self.min_cells >= 1, s, "min_cells", || "must be at least 1".into())?;
        ensure((0.0..=0.9).contains(&self.validation_fraction), s, "validation_fraction", || format!("must be in [0, 0.9], found {}", self.validation_fraction))?;
        let forest = ForestParams {
            n_trees: self.n_trees,
            max_depth: self.max_depth,
            min_samples_leaf: self.min_samples_leaf,
            m_fraction: self.m_fraction,
            seed: self.seed,
            ..Default::default()
        }
        .check()?;
        Ok(SizesConfig { params: self, forest })
    }
}

/// The target groups: every (plate, well) where a target's compound was applied, crossed with
/// the target's cell type (metadata from the measured group of that well). A compound never
/// applied in any measured well is an error naming its id_map row.
pub fn target_groups(measured: &SizeTable, targets: &IdMap, targets_path: &Path) -> Result<Vec<GroupKey>> {
    let mut out = Vec::new();
    for (row, t) in targets.rows.iter().enumerate() {
        let mut wells = BTreeSet::new();
        for r in measured.rows.iter().filter(|r| r.key.sm_name == t.sm_name) {
            if wells.insert((r.key.plate_name.clone(), r.key.well.clone())) {
                out.push(GroupKey { cell_type: t.cell_type.clone(), control: false, ..r.key.clone() });
            }
        }
        if wells.is_empty() {
            return Err(Error::Core(perturbgen::Error::invalid(
                targets_path,
                format!("row {}: compound `{}` (cell type {}) was never applied in a plate layout of the training cells: no well to generate", row + 1, t.sm_name, t.cell_type),
            )));
        }
    }
    Ok(out)
}

/// What [`fit_sizes`] returns: the predicted table and the held-out check.
#[derive(Debug, Clone)]
pub struct SizesFit {
    pub predicted: SizeTable,
    /// Held-out training groups: (observed, predicted) cells and scale.
    pub heldout_cells: Vec<(f64, f64)>,
    pub heldout_scale: Vec<(f64, f64)>,
    pub r2_cells: f64,
    pub r2_scale: f64,
    pub n_train_groups: usize,
}

const FEATURES: [&str; 3] = ["cell_type", "plate_name", "well"];

fn forests(train: &[SizeRow], predict: &[GroupKey], config: &SizesConfig, progress: &(dyn Fn() + Sync)) -> Result<(Vec<f64>, Vec<f64>)> {
    let columns: Vec<String> = FEATURES.iter().map(|s| s.to_string()).collect();
    let keys: Vec<GroupKey> = train.iter().map(|r| r.key.clone()).collect();
    let onehot = OneHot::new(&columns, &keys);
    let p = onehot.n_features();
    let targets = vec![train.iter().map(|r| r.n_cells).collect(), train.iter().map(|r| r.scale).collect()];
    let fitted = fit_forests(&onehot.matrix(&keys), train.len(), p, &onehot.matrix(predict), predict.len(), &targets, &config.forest, progress)?;
    let mut it = fitted.into_iter();
    Ok((it.next().unwrap_or_default(), it.next().unwrap_or_default()))
}

/// 1 − SS_res / SS_tot (NaN with fewer than two points or no spread).
pub fn r_squared(pairs: &[(f64, f64)]) -> f64 {
    let n = pairs.len() as f64;
    let mean = pairs.iter().map(|p| p.0).sum::<f64>() / n;
    let ss_tot: f64 = pairs.iter().map(|p| (p.0 - mean).powi(2)).sum();
    let ss_res: f64 = pairs.iter().map(|p| (p.0 - p.1).powi(2)).sum();
    if pairs.len() < 2 || ss_tot <= 0.0 { f64::NAN } else { 1.0 - ss_res / ss_tot }
}

/// Forest fits this run does (for a progress bar).
pub fn n_work_units(config: &SizesConfig) -> usize {
    let shards = config.forest.n_trees.div_ceil(crate::forest::SHARD_TREES);
    let fits = if config.params.validation_fraction > 0.0 { 2 } else { 1 };
    2 * shards * fits
}

/// Fits the size forests on the `measured` groups and predicts `targets`.
pub fn fit_sizes(measured: &SizeTable, targets: &[GroupKey], config: &SizesConfig, progress: &(dyn Fn() + Sync)) -> Result<SizesFit> {
    let train = &measured.rows;
    if train.len() < 2 {
        return Err(Error::Forest(format!("{} measured compound well(s): too few groups to learn sizes from", train.len())));
    }
    let p = &config.params;
    // Held-out check: a seeded share of the groups, predicted by forests fitted on the rest.
    let mut order: Vec<usize> = (0..train.len()).collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(p.seed ^ 0x0051_23e5));
    let n_val = ((p.validation_fraction * train.len() as f64).round() as usize).min(train.len() - 1);
    let (val_idx, fit_idx) = order.split_at(n_val);
    let (mut heldout_cells, mut heldout_scale) = (Vec::new(), Vec::new());
    if n_val > 0 {
        let fit_rows: Vec<SizeRow> = fit_idx.iter().map(|&i| train[i].clone()).collect();
        let val_keys: Vec<GroupKey> = val_idx.iter().map(|&i| train[i].key.clone()).collect();
        let (cells, scale) = forests(&fit_rows, &val_keys, config, progress)?;
        for (k, &i) in val_idx.iter().enumerate() {
            heldout_cells.push((train[i].n_cells, cells[k]));
            heldout_scale.push((train[i].scale, scale[k]));
        }
    }
    let (cells, scale) = forests(train, targets, config, progress)?;
    let rows = targets
        .iter()
        .zip(cells.iter().zip(&scale))
        .map(|(key, (&n, &s))| SizeRow { key: key.clone(), n_cells: n.round().max(p.min_cells as f64), scale: s.max(1.0), observed: false })
        .collect();
    Ok(SizesFit {
        predicted: SizeTable { rows },
        r2_cells: r_squared(&heldout_cells),
        r2_scale: r_squared(&heldout_scale),
        heldout_cells,
        heldout_scale,
        n_train_groups: train.len(),
    })
}

/// Observed vs predicted on the held-out groups, one panel per target, R² in the titles.
pub fn plot_fit(path: &Path, fit: &SizesFit, scale: CellScale) -> perturbgen::Result<()> {
    use plotters::prelude::*;
    let scale_name = match scale {
        CellScale::Max => "median max count",
        CellScale::Sum => "median total count",
        CellScale::Mean => "median mean count",
    };
    let panels = [("cells per group", &fit.heldout_cells, fit.r2_cells), (scale_name, &fit.heldout_scale, fit.r2_scale)];
    perturbgen::plot::draw_png(path, (1200, 560), |root| {
        let areas = root.split_evenly((1, 2));
        for (area, (name, points, r2)) in areas.iter().zip(panels) {
            let hi = points.iter().flat_map(|p| [p.0, p.1]).fold(1.0f64, f64::max) * 1.05;
            let mut chart = ChartBuilder::on(area)
                .caption(format!("{name}: held-out groups (n = {}), R² = {r2:.3}", points.len()), ("sans-serif", 20))
                .margin(15)
                .x_label_area_size(45)
                .y_label_area_size(60)
                .build_cartesian_2d(0.0..hi, 0.0..hi)
                .map_err(|e| e.to_string())?;
            chart.configure_mesh().x_desc("observed").y_desc("predicted (size forest)").draw().map_err(|e| e.to_string())?;
            chart.draw_series(LineSeries::new([(0.0, 0.0), (hi, hi)], BLACK.mix(0.4))).map_err(|e| e.to_string())?;
            chart
                .draw_series(points.iter().map(|&(o, p)| Circle::new((o, p), 3, BLUE.mix(0.6).filled())))
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}
