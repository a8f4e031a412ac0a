//! One figure per target pair for one route: predicted vs true signed −log10 P (the value the
//! routes are scored on) and the truth's volcano plot (logFC vs −log10 P.Value), the genes with
//! the largest |truth| named in both, so a user sees which genes a route gets right and how
//! strong the true response is.
use crate::error::{Error, Result};
use crate::io::de_stats::DeStats;
use crate::io::de_table::DeTable;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Genes named in each figure: the largest |truth|.
pub const N_LABELLED: usize = 10;
/// adj.P.Val below which the volcano colours a gene as DE.
const ADJ_P_DE: f64 = 0.05;

/// One written figure.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetFigure {
    pub cell_type: String,
    pub sm_name: String,
    pub file: String,
    pub pearson: f64,
}

/// Pearson correlation as the scores count it (crate::metrics): 0 where a side is constant.
pub use crate::metrics::pearson;

/// The best route of a scores table (sorted best first): the first data row that is not a
/// reference (the noise ceiling, `kind` = `reference`, is not a prediction).
pub fn best_route(scores: &Path) -> Result<String> {
    let mut reader = csv::Reader::from_path(scores).map_err(|e| Error::invalid(scores, e.to_string()))?;
    let headers = reader.headers().map_err(|e| Error::invalid(scores, e.to_string()))?.clone();
    let col = headers.iter().position(|h| h == "route").ok_or_else(|| Error::invalid(scores, "no `route` column"))?;
    let kind = headers.iter().position(|h| h == "kind");
    for rec in reader.records() {
        let rec = rec.map_err(|e| Error::invalid(scores, e.to_string()))?;
        if kind.and_then(|k| rec.get(k)) != Some("reference") {
            return Ok(rec.get(col).unwrap_or_default().to_string());
        }
    }
    Err(Error::invalid(scores, "no data row (no route was scored)"))
}

/// File name of a pair: both names reduced to `[a-z0-9_]` (as the workflow names cell types).
fn slug(s: &str) -> String {
    let s: String = s.to_lowercase().replace('+', "p").chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    let mut out = String::new();
    for c in s.chars() {
        if !(c == '_' && out.ends_with('_')) {
            out.push(c);
        }
    }
    out.trim_matches('_').chars().take(80).collect()
}

/// Draws every truth pair's figure into `out_dir` (replaced as a whole, all or nothing) and
/// writes `targets.csv` there: cell_type, sm_name, file, pearson.
pub fn write_target_plots(truth: &DeStats, truth_path: &Path, prediction: &DeTable, prediction_path: &Path, route: &str, out_dir: &Path) -> Result<Vec<TargetFigure>> {
    if truth.n_rows() == 0 {
        return Err(Error::invalid(truth_path, "no target pairs"));
    }
    let gene_col: HashMap<&str, usize> = prediction.genes.iter().enumerate().map(|(i, g)| (g.as_str(), i)).collect();
    let cols = truth
        .genes
        .iter()
        .map(|g| gene_col.get(g.as_str()).copied().ok_or_else(|| Error::invalid(prediction_path, format!("no column for gene `{g}` of the truth"))))
        .collect::<Result<Vec<usize>>>()?;
    let rows: HashMap<(&str, &str), usize> = prediction.keys.iter().enumerate().map(|(i, k)| ((k.cell_type.as_str(), k.sm_name.as_str()), i)).collect();
    let x = truth.table();
    let g = truth.genes.len();

    let parent = match out_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
    let name = out_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "targets".into());
    let staging = tempfile::Builder::new().prefix(&format!(".{name}.{}.", std::process::id())).tempdir_in(&parent).map_err(|e| Error::io(&parent, e))?;

    let mut figures = Vec::new();
    let mut used = std::collections::HashSet::new();
    for (r, key) in truth.keys.iter().enumerate() {
        let Some(&pr) = rows.get(&(key.cell_type.as_str(), key.sm_name.as_str())) else {
            return Err(Error::invalid(prediction_path, format!("no prediction for target ({}, {})", key.cell_type, key.sm_name)));
        };
        let truth_row = &x.values[r * g..(r + 1) * g];
        let pred_row: Vec<f64> = cols.iter().map(|&c| prediction.row(pr)[c]).collect();
        let log_fc = &truth.log_fc[r * g..(r + 1) * g];
        let p = &truth.p_value[r * g..(r + 1) * g];
        let adj = &truth.adj_p_value[r * g..(r + 1) * g];
        let mut order: Vec<usize> = (0..g).collect();
        order.sort_by(|&a, &b| truth_row[b].abs().total_cmp(&truth_row[a].abs()).then(a.cmp(&b)));
        let top = &order[..N_LABELLED.min(g)];
        let r_value = pearson(truth_row, &pred_row);

        let base = format!("{}__{}", slug(&key.cell_type), slug(&key.sm_name));
        let mut file = format!("{base}.png");
        let mut k = 2;
        while !used.insert(file.clone()) {
            file = format!("{base}_{k}.png");
            k += 1;
        }
        let path = staging.path().join(&file);
        let neg_log_p: Vec<f64> = p.iter().map(|&v| -(if v <= 0.0 { f64::EPSILON } else { v }).log10()).collect();
        crate::plot::draw_png(&path, (1500, 680), |root| {
            let title = format!("{} · {}  (route {route})", key.cell_type, key.sm_name);
            let root = root.titled(&title, ("sans-serif", 24)).map_err(|e| e.to_string())?;
            let (left, right) = root.split_horizontally(750);
            let r_text = if r_value.is_nan() { "n/a (constant prediction)".to_string() } else { format!("{r_value:.3}") };
            let points: Vec<(f64, f64, bool)> = (0..g).map(|j| (truth_row[j], pred_row[j], false)).collect();
            scatter_panel(&left, &format!("predicted vs true, Pearson r = {r_text}"), "true sign(logFC)·−log10 P", "predicted", &points, top, &truth.genes, true)?;
            let points: Vec<(f64, f64, bool)> = (0..g).map(|j| (log_fc[j], neg_log_p[j], adj[j] < ADJ_P_DE)).collect();
            let n_de = points.iter().filter(|p| p.2).count();
            scatter_panel(&right, &format!("true volcano ({n_de} genes adj.P < {ADJ_P_DE})"), "logFC", "−log10 P.Value", &points, top, &truth.genes, false)
        })?;
        figures.push(TargetFigure { cell_type: key.cell_type.clone(), sm_name: key.sm_name.clone(), file, pearson: r_value });
    }
    let index = staging.path().join("targets.csv");
    let mut w = csv::Writer::from_path(&index).map_err(|e| Error::invalid(&index, e.to_string()))?;
    let csv_err = |e: csv::Error| Error::invalid(&index, e.to_string());
    w.write_record(["cell_type", "sm_name", "file", "pearson"]).map_err(csv_err)?;
    for f in &figures {
        let r = if f.pearson.is_nan() { String::new() } else { format!("{:?}", f.pearson) };
        w.write_record([f.cell_type.as_str(), f.sm_name.as_str(), f.file.as_str(), r.as_str()]).map_err(csv_err)?;
    }
    w.flush().map_err(|e| Error::io(&index, e))?;
    drop(w);

    // The finished folder replaces the old one: the old one is moved aside first (a rename
    // cannot replace a non-empty folder), so the target is either the old set or the new one.
    let staged = staging.keep();
    if out_dir.exists() {
        let old = parent.join(format!(".{name}.{}.old", std::process::id()));
        std::fs::rename(out_dir, &old).map_err(|e| Error::io(out_dir, e))?;
        std::fs::rename(&staged, out_dir).map_err(|e| Error::io(out_dir, e))?;
        let _ = std::fs::remove_dir_all(&old);
    } else {
        std::fs::rename(&staged, out_dir).map_err(|e| Error::io(out_dir, e))?;
    }
    Ok(figures)
}

/// A scatter of `points` (x, y, highlighted), the `top` genes marked and named; with
/// `identity`, the y = x line and equal axis ranges.
#[allow(clippy::too_many_arguments)]
fn scatter_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    x_label: &str,
    y_label: &str,
    points: &[(f64, f64, bool)],
    top: &[usize],
    genes: &[String],
    identity: bool,
) -> std::result::Result<(), String> {
    let range = |v: &mut dyn Iterator<Item = f64>| {
        let (lo, hi) = v.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
        if !lo.is_finite() { (-1.0, 1.0) } else if hi > lo { (lo, hi) } else { (lo - 1.0, hi + 1.0) }
    };
    let (mut x0, mut x1) = range(&mut points.iter().map(|p| p.0));
    let (mut y0, mut y1) = range(&mut points.iter().map(|p| p.1));
    if identity {
        let (lo, hi) = (x0.min(y0), x1.max(y1));
        (x0, x1, y0, y1) = (lo, hi, lo, hi);
    }
    let pad = |a: f64, b: f64| (a - 0.05 * (b - a), b + 0.05 * (b - a));
    let ((x0, x1), (y0, y1)) = (pad(x0, x1), pad(y0, y1));
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 19))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|e| e.to_string())?;
    chart.configure_mesh().x_desc(x_label).y_desc(y_label).draw().map_err(|e| e.to_string())?;
    if identity {
        let (lo, hi) = (x0.max(y0), x1.min(y1));
        chart.draw_series(LineSeries::new([(lo, lo), (hi, hi)], BLACK.mix(0.5).stroke_width(1))).map_err(|e| e.to_string())?;
    }
    chart
        .draw_series(points.iter().filter(|p| !p.2).map(|&(x, y, _)| Circle::new((x, y), 2, BLUE.mix(0.35).filled())))
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(points.iter().filter(|p| p.2).map(|&(x, y, _)| Circle::new((x, y), 2, RED.mix(0.5).filled())))
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(top.iter().map(|&j| Circle::new((points[j].0, points[j].1), 4, BLACK.stroke_width(1))))
        .map_err(|e| e.to_string())?;
    // Names of points in the right third go to their left, so that none runs off the panel.
    let right_third = x0 + (x1 - x0) * 2.0 / 3.0;
    chart
        .draw_series(top.iter().map(|&j| {
            let (x, y) = (points[j].0, points[j].1);
            let (text, pos) = if x > right_third {
                (format!("{} ", genes[j]), Pos::new(HPos::Right, VPos::Center))
            } else {
                (format!(" {}", genes[j]), Pos::new(HPos::Left, VPos::Center))
            };
            Text::new(text, (x, y), ("sans-serif", 14).into_font().color(&BLACK).pos(pos))
        }))
        .map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pearson_matches_hand_value() {
        // numpy.corrcoef([1, 2, 3], [2, 4, 6.5])
        assert!((pearson(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.5]) - 0.9979487157886733).abs() < 1e-12);
        assert_eq!(pearson(&[1.0, 2.0], &[0.0, 0.0]), 0.0);
    }

    #[test]
    fn slugs_are_file_names() {
        assert_eq!(slug("T cells CD4+"), "t_cells_cd4p");
        assert_eq!(slug("5-(9-Isopropyl)  X"), "5_9_isopropyl_x");
    }
}
