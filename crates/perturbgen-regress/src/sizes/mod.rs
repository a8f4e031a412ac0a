//! The size forests of the generative route (SPEC §4, `pgen-sizes`): per measured (cell type,
//! plate, well) group outside the control wells, two random forests (smartcore, through
//! [`crate::forest`]'s sharded fitting) learn the number of cells and the median per-cell scale,
//! and predict both for every target group: each plate × well where a target compound was
//! applied (known from other cell types' cells) crossed with the target cell type.
//!
//! Two modes ([`SizeMode`]):
//! - absolute (the write-up's): the forests learn the group's cells and scale from one-hot
//!   (cell type, plate, well). A cell type never measured outside its control wells — the
//!   usual target of a stimulation study — has no level of its own, so it gets the treated cell
//!   types' average size;
//! - relative to the controls: the forests learn ln(group / its cell type's own control wells
//!   on that plate) ([`controls::ControlSizes`]) from one-hot (cell type, plate, well,
//!   compound), i.e. what a compound does to a cell type's size; a target group's size is its
//!   cell type's own control size × exp(the predicted log ratio).
//!
//! The fit is judged on a held-out part of the training groups (R²), both modes on the same
//! groups when the control wells are given.
pub mod controls;

use crate::error::{Error, Result};
use crate::forest::{fit_forests, ForestParams, OneHot};
use perturbgen::io::id_map::IdMap;
use perturbgen::io::sizes::{CellScale, SizeRow, SizeTable};
use perturbgen::params::{ensure, ParamGuard};
use perturbgen::pseudobulk::GroupKey;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use controls::{ControlMatch, ControlSize, ControlSizes};
use std::collections::{BTreeMap, BTreeSet};
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
    /// true: the forests learn each group's log ratio to its cell type's own negative-control
    /// wells (same plate, else same donor, else all of them) and a target group is its cell
    /// type's control size × the predicted ratio; false: they learn the sizes themselves (the
    /// write-up's), and a cell type measured only under control gets the others' average size.
    pub relative_to_controls: bool,
}

impl Default for SizesParams {
    fn default() -> Self {
        Self { n_trees: 1000, max_depth: None, min_samples_leaf: 1, m_fraction: 1.0 / 3.0, seed: 0, min_cells: 5, validation_fraction: 0.2, scale: CellScale::Max, relative_to_controls: true }
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

/// How the size forests model a group's size (config `sizes.relative_to_controls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeMode {
    /// The cells and scale themselves, from one-hot (cell type, plate, well).
    Absolute,
    /// Their log ratio to the cell type's own control wells, from one-hot (cell type, plate,
    /// well, compound).
    RelativeToControls,
}

impl SizeMode {
    pub fn of(params: &SizesParams) -> Self {
        if params.relative_to_controls {
            Self::RelativeToControls
        } else {
            Self::Absolute
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Absolute => "absolute",
            Self::RelativeToControls => "relative to controls",
        }
    }
}

/// One mode's predictions of the held-out training groups (observed, predicted), same order
/// as [`SizesFit::heldout`].
#[derive(Debug, Clone)]
pub struct HeldOutCheck {
    pub mode: SizeMode,
    pub cells: Vec<(f64, f64)>,
    pub scale: Vec<(f64, f64)>,
    pub r2_cells: f64,
    pub r2_scale: f64,
}

/// What [`fit_sizes`] returns: the predicted table and the held-out checks.
#[derive(Debug, Clone)]
pub struct SizesFit {
    /// The target groups with the configured mode's sizes (n_cells rounded and clipped to
    /// `min_cells`, scale to at least 1).
    pub predicted: SizeTable,
    /// The mode `predicted` comes from.
    pub mode: SizeMode,
    /// Relative mode: each target group's control baseline (same order as `predicted`).
    pub baselines: Vec<ControlSize>,
    /// The held-out training groups.
    pub heldout: Vec<GroupKey>,
    /// Per mode (absolute, then relative where the control wells were given): its predictions
    /// of the held-out groups, by forests fitted on the other training groups.
    pub checks: Vec<HeldOutCheck>,
    /// Measured compound groups, and those of them with a control baseline.
    pub n_train_groups: usize,
    pub n_train_groups_with_controls: usize,
}

impl SizesFit {
    /// The held-out check of the mode the predictions come from.
    pub fn check(&self) -> Option<&HeldOutCheck> {
        self.checks.iter().find(|c| c.mode == self.mode)
    }
}

const ABSOLUTE_FEATURES: [&str; 3] = ["cell_type", "plate_name", "well"];
/// The compound too: its effect on the size is what carries over to a cell type never treated
/// (a well name alone stands for different compounds in different plate layouts).
const RELATIVE_FEATURES: [&str; 4] = ["cell_type", "plate_name", "well", "sm_name"];

/// Two forests (one per column of `targets`) on one-hot `features` of `train`, predicting `predict`.
fn forests(features: &[&str], train: &[GroupKey], targets: [Vec<f64>; 2], predict: &[GroupKey], config: &SizesConfig, progress: &(dyn Fn() + Sync)) -> Result<(Vec<f64>, Vec<f64>)> {
    let columns: Vec<String> = features.iter().map(|s| s.to_string()).collect();
    let onehot = OneHot::new(&columns, train);
    let p = onehot.n_features();
    let fitted = fit_forests(&onehot.matrix(train), train.len(), p, &onehot.matrix(predict), predict.len(), &targets, &config.forest, progress)?;
    let mut it = fitted.into_iter();
    Ok((it.next().unwrap_or_default(), it.next().unwrap_or_default()))
}

/// Absolute mode: the sizes of `predict` from the sizes of `train`.
fn absolute_sizes(train: &[&SizeRow], predict: &[GroupKey], config: &SizesConfig, progress: &(dyn Fn() + Sync)) -> Result<(Vec<f64>, Vec<f64>)> {
    let keys: Vec<GroupKey> = train.iter().map(|r| r.key.clone()).collect();
    let targets = [train.iter().map(|r| r.n_cells).collect(), train.iter().map(|r| r.scale).collect()];
    forests(&ABSOLUTE_FEATURES, &keys, targets, predict, config, progress)
}

/// Relative mode: `predict`'s baselines × exp(the log ratios learnt from the `train` groups
/// that have a baseline). Every group of `predict` must have one.
fn relative_sizes(train: &[&SizeRow], controls: &ControlSizes, predict: &[GroupKey], config: &SizesConfig, progress: &(dyn Fn() + Sync)) -> Result<(Vec<f64>, Vec<f64>)> {
    let with_baseline: Vec<(&SizeRow, ControlSize)> = train.iter().filter_map(|r| controls.baseline(&r.key).map(|b| (*r, b))).collect();
    if with_baseline.is_empty() {
        return Err(Error::Forest("no measured compound well of a cell type with negative-control wells: no size ratio to learn from".into()));
    }
    let baselines = predict.iter().map(|k| baseline_of(controls, k)).collect::<Result<Vec<_>>>()?;
    let keys: Vec<GroupKey> = with_baseline.iter().map(|(r, _)| r.key.clone()).collect();
    let targets = [
        with_baseline.iter().map(|(r, b)| (r.n_cells / b.n_cells).ln()).collect(),
        with_baseline.iter().map(|(r, b)| (r.scale / b.scale).ln()).collect(),
    ];
    let (cells, scale) = forests(&RELATIVE_FEATURES, &keys, targets, predict, config, progress)?;
    let cells = cells.iter().zip(&baselines).map(|(l, b)| b.n_cells * l.exp()).collect();
    let scale = scale.iter().zip(&baselines).map(|(l, b)| b.scale * l.exp()).collect();
    Ok((cells, scale))
}

fn baseline_of(controls: &ControlSizes, key: &GroupKey) -> Result<ControlSize> {
    controls.baseline(key).ok_or_else(|| {
        Error::Core(perturbgen::Error::Data(format!("cell type `{}` has no negative-control wells: no baseline for its size (sizes.relative_to_controls)", key.cell_type)))
    })
}

fn sizes_of(mode: SizeMode, train: &[&SizeRow], controls: Option<&ControlSizes>, predict: &[GroupKey], config: &SizesConfig, progress: &(dyn Fn() + Sync)) -> Result<(Vec<f64>, Vec<f64>)> {
    match (mode, controls) {
        (SizeMode::Absolute, _) => absolute_sizes(train, predict, config, progress),
        (SizeMode::RelativeToControls, Some(c)) => relative_sizes(train, c, predict, config, progress),
        (SizeMode::RelativeToControls, None) => Err(Error::param("sizes.relative_to_controls", "true needs the negative-control wells (pgen-sizes --negative-control)")),
    }
}

/// 1 − SS_res / SS_tot (NaN with fewer than two points or no spread).
pub fn r_squared(pairs: &[(f64, f64)]) -> f64 {
    let n = pairs.len() as f64;
    let mean = pairs.iter().map(|p| p.0).sum::<f64>() / n;
    let ss_tot: f64 = pairs.iter().map(|p| (p.0 - mean).powi(2)).sum();
    let ss_res: f64 = pairs.iter().map(|p| (p.0 - p.1).powi(2)).sum();
    if pairs.len() < 2 || ss_tot <= 0.0 { f64::NAN } else { 1.0 - ss_res / ss_tot }
}

/// The modes judged on the held-out groups: absolute, and relative where controls are given.
fn checked_modes(with_controls: bool) -> Vec<SizeMode> {
    if with_controls {
        vec![SizeMode::Absolute, SizeMode::RelativeToControls]
    } else {
        vec![SizeMode::Absolute]
    }
}

/// Forest fits this run does (for a progress bar): two forests per fit; one fit for the
/// targets, one per checked mode for the held-out groups.
pub fn n_work_units(config: &SizesConfig, with_controls: bool) -> usize {
    let shards = config.forest.n_trees.div_ceil(crate::forest::SHARD_TREES);
    let checks = if config.params.validation_fraction > 0.0 { checked_modes(with_controls).len() } else { 0 };
    2 * shards * (1 + checks)
}

/// Fits the size forests on the `measured` compound groups and predicts `targets`, in the
/// configured mode; `controls` (the negative-control wells) are needed by the relative mode,
/// and when given both modes are checked on the same held-out groups (drawn among the groups
/// with a control baseline).
pub fn fit_sizes(measured: &SizeTable, controls: Option<&ControlSizes>, targets: &[GroupKey], config: &SizesConfig, progress: &(dyn Fn() + Sync)) -> Result<SizesFit> {
    let train = &measured.rows;
    if train.len() < 2 {
        return Err(Error::Forest(format!("{} measured compound well(s): too few groups to learn sizes from", train.len())));
    }
    let p = &config.params;
    let mode = SizeMode::of(p);
    let has_baseline = |r: &SizeRow| controls.is_none_or(|c| c.baseline(&r.key).is_some());
    let n_with_controls = controls.map_or(0, |c| train.iter().filter(|r| c.baseline(&r.key).is_some()).count());
    // Held-out check: a seeded share of the groups (among those with a control baseline, so
    // that both modes predict the same ones), predicted by forests fitted on the rest.
    let mut order: Vec<usize> = (0..train.len()).collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(p.seed ^ 0x0051_23e5));
    let n_val = ((p.validation_fraction * train.len() as f64).round() as usize).min(train.len() - 1);
    let val_idx: Vec<usize> = order.iter().copied().filter(|&i| has_baseline(&train[i])).take(n_val).collect();
    let held: BTreeSet<usize> = val_idx.iter().copied().collect();
    let fit_rows: Vec<&SizeRow> = order.iter().filter(|i| !held.contains(i)).map(|&i| &train[i]).collect();
    let heldout: Vec<GroupKey> = val_idx.iter().map(|&i| train[i].key.clone()).collect();
    let mut checks = Vec::new();
    if !heldout.is_empty() {
        for m in checked_modes(controls.is_some()) {
            let (cells, scale) = sizes_of(m, &fit_rows, controls, &heldout, config, progress)?;
            let cells: Vec<(f64, f64)> = val_idx.iter().zip(cells).map(|(&i, v)| (train[i].n_cells, v)).collect();
            let scale: Vec<(f64, f64)> = val_idx.iter().zip(scale).map(|(&i, v)| (train[i].scale, v)).collect();
            checks.push(HeldOutCheck { mode: m, r2_cells: r_squared(&cells), r2_scale: r_squared(&scale), cells, scale });
        }
    }
    let all: Vec<&SizeRow> = train.iter().collect();
    let (cells, scale) = sizes_of(mode, &all, controls, targets, config, progress)?;
    let baselines = match (mode, controls) {
        (SizeMode::RelativeToControls, Some(c)) => targets.iter().map(|k| baseline_of(c, k)).collect::<Result<Vec<_>>>()?,
        _ => Vec::new(),
    };
    let rows = targets
        .iter()
        .zip(cells.iter().zip(&scale))
        .map(|(key, (&n, &s))| SizeRow { key: key.clone(), n_cells: n.round().max(p.min_cells as f64), scale: s.max(1.0), observed: false })
        .collect();
    Ok(SizesFit { predicted: SizeTable { rows }, mode, baselines, heldout, checks, n_train_groups: train.len(), n_train_groups_with_controls: n_with_controls })
}

/// How many target baselines came from each level of control wells (for the log).
pub fn baseline_matches(fit: &SizesFit) -> BTreeMap<ControlMatch, usize> {
    let mut out = BTreeMap::new();
    for b in &fit.baselines {
        *out.entry(b.matched).or_insert(0) += 1;
    }
    out
}

/// Observed vs predicted on the held-out groups, one panel per quantity, one colour per mode
/// with its R² in the legend.
pub fn plot_fit(path: &Path, fit: &SizesFit, scale: CellScale) -> perturbgen::Result<()> {
    use plotters::prelude::*;
    let scale_name = match scale {
        CellScale::Max => "median max count",
        CellScale::Sum => "median total count",
        CellScale::Mean => "median mean count",
    };
    type Pick = fn(&HeldOutCheck) -> (&Vec<(f64, f64)>, f64);
    let panels: [(&str, Pick); 2] = [("cells per group", |c| (&c.cells, c.r2_cells)), (scale_name, |c| (&c.scale, c.r2_scale))];
    let colours = [BLUE, RED];
    perturbgen::plot::draw_png(path, (1200, 560), |root| {
        let areas = root.split_evenly((1, 2));
        for (area, (name, pick)) in areas.iter().zip(panels) {
            let hi = fit.checks.iter().flat_map(|c| pick(c).0.iter().flat_map(|p| [p.0, p.1])).fold(1.0f64, f64::max) * 1.05;
            let mut chart = ChartBuilder::on(area)
                .caption(format!("{name}: held-out groups (n = {})", fit.heldout.len()), ("sans-serif", 20))
                .margin(15)
                .x_label_area_size(45)
                .y_label_area_size(60)
                .build_cartesian_2d(0.0..hi, 0.0..hi)
                .map_err(|e| e.to_string())?;
            chart.configure_mesh().x_desc("observed").y_desc("predicted (size forests)").draw().map_err(|e| e.to_string())?;
            chart.draw_series(LineSeries::new([(0.0, 0.0), (hi, hi)], BLACK.mix(0.4))).map_err(|e| e.to_string())?;
            for (check, colour) in fit.checks.iter().zip(colours) {
                let (points, r2) = pick(check);
                let used = if check.mode == fit.mode { ", used" } else { "" };
                chart
                    .draw_series(points.iter().map(|&(o, p)| Circle::new((o, p), 3, colour.mix(0.6).filled())))
                    .map_err(|e| e.to_string())?
                    .label(format!("{}: R² = {r2:.3}{used}", check.mode.name()))
                    .legend(move |(x, y)| Circle::new((x + 10, y), 4, colour.filled()));
            }
            chart.configure_series_labels().position(SeriesLabelPosition::UpperLeft).background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}
