//! `pgen-score`: a prediction against the truth, row by row, with the field's metrics
//! (crate::metrics; SPEC §5): Kaggle's MRRMSE, OP3's set on the raw and on the ±4-clipped
//! truth, sign agreement on the DE genes, top-k overlap and discrimination. Also the clip a
//! route's values get before scoring and in its submission, chosen on its inner hold-out.
use crate::error::{Error, Result};
use crate::io::de_table::DeTable;
use crate::metrics::{self, OP3_TRUTH_CLIP, TOP_K};
use std::collections::HashMap;
use std::path::Path;

pub use crate::metrics::rmse;

/// A column of the score tables. Per row each is one (cell type, compound) row's value; overall
/// it is their mean (over the rows where it is defined), and RMSE's mean is named MRRMSE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Mean row-wise RMSE against the raw truth (the Kaggle competition's metric).
    Mrrmse,
    Mae,
    Pearson,
    Spearman,
    Cosine,
    /// Mean row-wise RMSE against the truth clipped to ±4 (OP3's headline metric).
    #[serde(rename = "mrrmse_clip4")]
    MrrmseClip4,
    #[serde(rename = "mae_clip4")]
    MaeClip4,
    #[serde(rename = "pearson_clip4")]
    PearsonClip4,
    #[serde(rename = "spearman_clip4")]
    SpearmanClip4,
    #[serde(rename = "cosine_clip4")]
    CosineClip4,
    SignAgreement,
    #[serde(rename = "top50_overlap")]
    Top50Overlap,
    #[serde(rename = "top100_overlap")]
    Top100Overlap,
    #[serde(rename = "top200_overlap")]
    Top200Overlap,
    Discrimination,
}

impl Metric {
    /// Every metric, in column order.
    pub const ALL: [Metric; 15] = [
        Metric::Mrrmse,
        Metric::Mae,
        Metric::Pearson,
        Metric::Spearman,
        Metric::Cosine,
        Metric::MrrmseClip4,
        Metric::MaeClip4,
        Metric::PearsonClip4,
        Metric::SpearmanClip4,
        Metric::CosineClip4,
        Metric::SignAgreement,
        Metric::Top50Overlap,
        Metric::Top100Overlap,
        Metric::Top200Overlap,
        Metric::Discrimination,
    ];

    /// Its column in the per-row tables.
    pub fn row_name(self) -> &'static str {
        match self {
            Metric::Mrrmse => "rmse",
            Metric::MrrmseClip4 => "rmse_clip4",
            m => m.name(),
        }
    }

    /// Its column in the overall tables (scores.csv) and its config name.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Mrrmse => "mrrmse",
            Metric::Mae => "mae",
            Metric::Pearson => "pearson",
            Metric::Spearman => "spearman",
            Metric::Cosine => "cosine",
            Metric::MrrmseClip4 => "mrrmse_clip4",
            Metric::MaeClip4 => "mae_clip4",
            Metric::PearsonClip4 => "pearson_clip4",
            Metric::SpearmanClip4 => "spearman_clip4",
            Metric::CosineClip4 => "cosine_clip4",
            Metric::SignAgreement => "sign_agreement",
            Metric::Top50Overlap => "top50_overlap",
            Metric::Top100Overlap => "top100_overlap",
            Metric::Top200Overlap => "top200_overlap",
            Metric::Discrimination => "discrimination",
        }
    }

    pub fn index(self) -> usize {
        Metric::ALL.iter().position(|m| *m == self).expect("listed")
    }

    pub fn lower_is_better(self) -> bool {
        matches!(self, Metric::Mrrmse | Metric::Mae | Metric::MrrmseClip4 | Metric::MaeClip4 | Metric::Discrimination)
    }

    /// `a` scores better than `b` (an undefined value is worse than any defined one).
    pub fn better(self, a: Option<f64>, b: Option<f64>) -> bool {
        match (a, b) {
            (Some(a), Some(b)) => {
                if self.lower_is_better() {
                    a < b
                } else {
                    a > b
                }
            }
            (Some(_), None) => true,
            _ => false,
        }
    }
}

impl std::str::FromStr for Metric {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Metric::ALL.into_iter().find(|m| m.name() == s).ok_or_else(|| format!("`{s}` is not a metric ({})", Metric::ALL.map(|m| m.name()).join(", ")))
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One row's metrics, in [`Metric::ALL`] order; None where undefined (no DE gene for the sign
/// agreement, a single row for discrimination).
#[derive(Debug, Clone, PartialEq)]
pub struct RowScore {
    pub cell_type: String,
    pub sm_name: String,
    pub values: Vec<Option<f64>>,
}

impl RowScore {
    pub fn get(&self, m: Metric) -> Option<f64> {
        self.values[m.index()]
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    pub rows: Vec<RowScore>,
    /// Each metric's mean over the rows where it is defined.
    pub overall: Vec<Option<f64>>,
    /// The mean row-wise RMSE (= overall[Mrrmse]).
    pub mrrmse: f64,
}

impl Scores {
    pub fn get(&self, m: Metric) -> Option<f64> {
        self.overall[m.index()]
    }
}

/// The metrics of one row except discrimination (which needs every row).
fn row_metrics(truth: &[f64], prediction: &[f64]) -> Vec<Option<f64>> {
    let clipped = metrics::clipped(truth, OP3_TRUTH_CLIP);
    let mut v = Vec::with_capacity(Metric::ALL.len());
    for t in [truth, clipped.as_slice()] {
        v.extend([metrics::rmse(t, prediction), metrics::mae(t, prediction), metrics::pearson(t, prediction), metrics::spearman(t, prediction), metrics::cosine(t, prediction)].map(Some));
    }
    v.push(metrics::sign_agreement(truth, prediction));
    v.extend(TOP_K.map(|k| Some(metrics::top_k_overlap(truth, prediction, k))));
    v
}

/// Scores every truth row against the prediction row of the same (cell type, compound).
/// Genes must be the same set (a different order is re-aligned); the prediction must hold
/// exactly the truth's pairs.
pub fn score(truth: &DeTable, prediction: &DeTable, truth_path: &Path, prediction_path: &Path) -> Result<Scores> {
    let aligned = aligned_prediction(truth, prediction, truth_path, prediction_path)?;
    let ng = truth.genes.len();
    let mut rows = Vec::with_capacity(truth.n_rows());
    for (i, k) in truth.keys.iter().enumerate() {
        let p = &aligned[i * ng..(i + 1) * ng];
        let values = row_metrics(truth.row(i), p);
        if !values[0].is_some_and(f64::is_finite) {
            // Finite inputs (the readers refuse NaN and ±inf) whose squares overflow: a value
            // no signed −log10 p can be (that is at most ~308 in magnitude).
            let largest = |v: &[f64]| v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            let (in_truth, in_prediction) = (largest(truth.row(i)), largest(p));
            let (path, value) = if in_prediction >= in_truth { (prediction_path, in_prediction) } else { (truth_path, in_truth) };
            return Err(Error::invalid(path, format!("pair ({}, {}): a value of magnitude {value:e} makes the RMSE overflow (signed −log10 p values are at most ~308)", k.cell_type, k.sm_name)));
        }
        rows.push(RowScore { cell_type: k.cell_type.clone(), sm_name: k.sm_name.clone(), values });
    }
    let truths: Vec<&[f64]> = (0..truth.n_rows()).map(|i| truth.row(i)).collect();
    let predictions: Vec<&[f64]> = (0..truth.n_rows()).map(|i| &aligned[i * ng..(i + 1) * ng]).collect();
    for (row, d) in rows.iter_mut().zip(metrics::discrimination(&truths, &predictions)) {
        row.values.push(d);
    }
    let overall: Vec<Option<f64>> = (0..Metric::ALL.len())
        .map(|m| {
            let defined: Vec<f64> = rows.iter().filter_map(|r| r.values[m]).collect();
            (!defined.is_empty()).then(|| defined.iter().sum::<f64>() / defined.len() as f64)
        })
        .collect();
    let mrrmse = overall[Metric::Mrrmse.index()].expect("every row has an RMSE");
    Ok(Scores { rows, overall, mrrmse })
}

/// The prediction's values in the truth's row and gene order (rows × genes). The prediction
/// must hold each truth pair once, nothing else, and the truth's genes.
pub fn aligned_prediction(truth: &DeTable, prediction: &DeTable, truth_path: &Path, prediction_path: &Path) -> Result<Vec<f64>> {
    let order = align_genes(truth, prediction, prediction_path)?;
    let mut by_pair: HashMap<(&str, &str), usize> = HashMap::new();
    for (i, k) in prediction.keys.iter().enumerate() {
        if by_pair.insert((&k.cell_type, &k.sm_name), i).is_some() {
            return Err(Error::invalid(prediction_path, format!("pair ({}, {}) appears twice", k.cell_type, k.sm_name)));
        }
    }
    if truth.n_rows() == 0 {
        return Err(Error::invalid(truth_path, "no rows to score"));
    }
    let mut out = Vec::with_capacity(truth.values.len());
    for k in &truth.keys {
        let j = *by_pair.get(&(k.cell_type.as_str(), k.sm_name.as_str())).ok_or_else(|| {
            Error::invalid(prediction_path, format!("no prediction for the truth pair ({}, {})", k.cell_type, k.sm_name))
        })?;
        let p = prediction.row(j);
        out.extend(order.iter().map(|&g| p[g]));
    }
    if prediction.n_rows() != truth.n_rows() {
        let extra = prediction.keys.iter().find(|k| !truth.keys.iter().any(|t| t.cell_type == k.cell_type && t.sm_name == k.sm_name)).expect("more rows than truth");
        return Err(Error::invalid(prediction_path, format!("pair ({}, {}) is not in the truth {}", extra.cell_type, extra.sm_name, truth_path.display())));
    }
    Ok(out)
}

/// For each truth gene, its column in the prediction.
fn align_genes(truth: &DeTable, prediction: &DeTable, prediction_path: &Path) -> Result<Vec<usize>> {
    if truth.genes == prediction.genes {
        return Ok((0..truth.genes.len()).collect());
    }
    let index: HashMap<&str, usize> = prediction.genes.iter().enumerate().map(|(i, g)| (g.as_str(), i)).collect();
    if let Some(g) = truth.genes.iter().find(|g| !index.contains_key(g.as_str())) {
        return Err(Error::invalid(prediction_path, format!("gene `{g}` of the truth is missing")));
    }
    if prediction.genes.len() != truth.genes.len() {
        let extra = prediction.genes.iter().find(|g| !truth.genes.contains(g)).map_or(String::new(), |g| format!(" (e.g. `{g}`)"));
        return Err(Error::invalid(prediction_path, format!("{} genes, the truth has {}{extra}", prediction.genes.len(), truth.genes.len())));
    }
    Ok(truth.genes.iter().map(|g| index[g.as_str()]).collect())
}

fn format_value(v: Option<f64>) -> String {
    v.map_or(String::new(), |x| format!("{x:?}"))
}

/// The per-row table: cell_type, sm_name, the clip applied to the prediction (`clip`), one
/// column per metric ([`Metric::row_name`]; empty where undefined), then the `ALL,MEAN` row of
/// the means.
pub fn write_scores(path: &Path, scores: &Scores, clip: &str) -> Result<()> {
    crate::atomic::write_atomic(path, |w| {
        let mut out = csv::Writer::from_writer(w);
        let mut header = vec!["cell_type", "sm_name", "clip"];
        header.extend(Metric::ALL.map(Metric::row_name));
        out.write_record(&header)?;
        for r in &scores.rows {
            let mut rec = vec![r.cell_type.clone(), r.sm_name.clone(), clip.to_string()];
            rec.extend(r.values.iter().map(|v| format_value(*v)));
            out.write_record(&rec)?;
        }
        let mut all = vec!["ALL".to_string(), "MEAN".to_string(), clip.to_string()];
        all.extend(scores.overall.iter().map(|v| format_value(*v)));
        out.write_record(&all)?;
        out.flush()?;
        Ok(())
    })
}

/// Bar plot of the per-row RMSE (worst first), the overall MRRMSE, OP3's clipped MRRMSE and
/// the mean Pearson in the title.
pub fn plot_scores(path: &Path, scores: &Scores, title: &str) -> Result<()> {
    let mut rows: Vec<&RowScore> = scores.rows.iter().collect();
    let rmse_of = |r: &RowScore| r.get(Metric::Mrrmse).unwrap_or(f64::NAN);
    rows.sort_by(|a, b| rmse_of(b).total_cmp(&rmse_of(a)));
    let bars: Vec<(String, f64)> = rows.iter().take(40).map(|r| (format!("{} | {}", r.cell_type, r.sm_name), rmse_of(r))).collect();
    let shown = if rows.len() > bars.len() { format!("{} rows; worst {} shown", rows.len(), bars.len()) } else { format!("{} rows", rows.len()) };
    let caption = format!(
        "{title}: MRRMSE {:.4}, clipped ±4 {:.4}, Pearson {:.3} ({shown})",
        scores.mrrmse,
        scores.get(Metric::MrrmseClip4).unwrap_or(f64::NAN),
        scores.get(Metric::Pearson).unwrap_or(f64::NAN)
    );
    let height = (120 + 22 * bars.len() as u32).max(300);
    crate::plot::draw_png(path, (1000, height), |root| crate::plot::bar_panel(root, &caption, "RMSE", &bars))
}

/// The prediction's rows in id_map order (for the submission CSV).
pub fn submission_values(prediction: &DeTable, ids: &crate::io::id_map::IdMap, prediction_path: &Path) -> Result<Vec<f64>> {
    let mut values = Vec::with_capacity(ids.rows.len() * prediction.genes.len());
    for r in &ids.rows {
        let i = prediction
            .keys
            .iter()
            .position(|k| k.cell_type == r.cell_type && k.sm_name == r.sm_name)
            .ok_or_else(|| Error::invalid(prediction_path, format!("no prediction for id {} ({}, {})", r.id, r.cell_type, r.sm_name)))?;
        values.extend_from_slice(prediction.row(i));
    }
    Ok(values)
}
