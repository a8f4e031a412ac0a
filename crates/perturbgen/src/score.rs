//! `pgen-score`: MRRMSE (SPEC §1) of a prediction against a truth table, per row and overall.
use crate::error::{Error, Result};
use crate::io::de_table::DeTable;
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RowScore {
    pub cell_type: String,
    pub sm_name: String,
    pub rmse: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Scores {
    pub rows: Vec<RowScore>,
    pub mrrmse: f64,
}

/// Root mean squared error of one row.
pub fn rmse(truth: &[f64], prediction: &[f64]) -> f64 {
    let sse: f64 = truth.iter().zip(prediction).map(|(t, p)| (t - p) * (t - p)).sum();
    (sse / truth.len() as f64).sqrt()
}

/// Scores every truth row against the prediction row of the same (cell type, compound).
/// Genes must be the same set (a different order is re-aligned); the prediction must hold
/// exactly the truth's pairs.
pub fn score(truth: &DeTable, prediction: &DeTable, truth_path: &Path, prediction_path: &Path) -> Result<Scores> {
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
    let mut rows = Vec::with_capacity(truth.n_rows());
    for (i, k) in truth.keys.iter().enumerate() {
        let j = *by_pair.get(&(k.cell_type.as_str(), k.sm_name.as_str())).ok_or_else(|| {
            Error::invalid(prediction_path, format!("no prediction for the truth pair ({}, {})", k.cell_type, k.sm_name))
        })?;
        let p = prediction.row(j);
        let aligned: Vec<f64> = order.iter().map(|&g| p[g]).collect();
        let row_rmse = rmse(truth.row(i), &aligned);
        if !row_rmse.is_finite() {
            // Finite inputs (the readers refuse NaN and ±inf) whose squares overflow: a value
            // no signed −log10 p can be (that is at most ~308 in magnitude).
            let largest = |v: &[f64]| v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            let (in_truth, in_prediction) = (largest(truth.row(i)), largest(&aligned));
            let (path, value) = if in_prediction >= in_truth { (prediction_path, in_prediction) } else { (truth_path, in_truth) };
            return Err(Error::invalid(path, format!("pair ({}, {}): a value of magnitude {value:e} makes the RMSE overflow (signed −log10 p values are at most ~308)", k.cell_type, k.sm_name)));
        }
        rows.push(RowScore { cell_type: k.cell_type.clone(), sm_name: k.sm_name.clone(), rmse: row_rmse });
    }
    if prediction.n_rows() != truth.n_rows() {
        let extra = prediction.keys.iter().find(|k| !truth.keys.iter().any(|t| t.cell_type == k.cell_type && t.sm_name == k.sm_name)).expect("more rows than truth");
        return Err(Error::invalid(prediction_path, format!("pair ({}, {}) is not in the truth {}", extra.cell_type, extra.sm_name, truth_path.display())));
    }
    let mrrmse = rows.iter().map(|r| r.rmse).sum::<f64>() / rows.len() as f64;
    Ok(Scores { rows, mrrmse })
}

/// For each truth gene, its column in the prediction.
fn align_genes(truth: &DeTable, prediction: &DeTable, prediction_path: &Path) -> Result<Vec<usize>> {
    if truth.genes == prediction.genes {
        return Ok((0..truth.genes.len()).collect());
    }
    let index: HashMap<&str, usize> = prediction.genes.iter().enumerate().map(|(i, g)| (g.as_str(), i)).collect();
    if prediction.genes.len() != truth.genes.len() {
        return Err(Error::invalid(prediction_path, format!("{} genes, the truth has {}", prediction.genes.len(), truth.genes.len())));
    }
    truth
        .genes
        .iter()
        .map(|g| index.get(g.as_str()).copied().ok_or_else(|| Error::invalid(prediction_path, format!("gene `{g}` of the truth is missing"))))
        .collect()
}

pub fn write_scores(path: &Path, scores: &Scores) -> Result<()> {
    crate::atomic::write_atomic(path, |w| {
        let mut out = csv::Writer::from_writer(w);
        out.write_record(["cell_type", "sm_name", "rmse"])?;
        for r in &scores.rows {
            out.write_record([r.cell_type.as_str(), &r.sm_name, &format!("{:?}", r.rmse)])?;
        }
        out.write_record(["ALL", "MRRMSE", &format!("{:?}", scores.mrrmse)])?;
        out.flush()?;
        Ok(())
    })
}

/// Bar plot of the per-row RMSE (worst first), the overall MRRMSE in the title.
pub fn plot_scores(path: &Path, scores: &Scores, title: &str) -> Result<()> {
    let mut rows: Vec<&RowScore> = scores.rows.iter().collect();
    rows.sort_by(|a, b| b.rmse.total_cmp(&a.rmse));
    let bars: Vec<(String, f64)> = rows.iter().take(40).map(|r| (format!("{} | {}", r.cell_type, r.sm_name), r.rmse)).collect();
    let caption = if rows.len() > bars.len() {
        format!("{title}: MRRMSE {:.4} ({} rows; worst {} shown)", scores.mrrmse, rows.len(), bars.len())
    } else {
        format!("{title}: MRRMSE {:.4} ({} rows)", scores.mrrmse, rows.len())
    };
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
