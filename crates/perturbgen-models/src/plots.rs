//! The training run's pictures: loss curves per epoch, and the latent space (first two
//! dimensions, or the first two principal components when there are more) coloured by cell
//! type and by compound.
use super::checkpoint::EpochLog;
use crate::error::Result;
use perturbgen::plot::draw_png;
use plotters::prelude::*;
use std::path::Path;

fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    if !lo.is_finite() {
        (0.0, 1.0)
    } else if hi > lo {
        let pad = (hi - lo) * 0.05;
        (lo - pad, hi + pad)
    } else {
        (lo - 0.5, hi + 0.5)
    }
}

/// Two panels: reconstruction (NB NLL per cell) and the prior/KL term, train and validation.
/// With more than three epochs the first is left out: it starts from an untrained decoder and
/// would flatten the rest of the curve.
pub fn loss_curves(path: &Path, history: &[EpochLog], model: &str, best_epoch: usize) -> Result<()> {
    let history = if history.len() > 3 { &history[1..] } else { history };
    let prior_name = if model == "dgd" { "−log p(z)" } else { "KL" };
    Ok(draw_png(path, (1200, 500), |root| {
        let panels = root.split_evenly((1, 2));
        type Get = fn(&EpochLog) -> f64;
        let series: [(&str, Get, Get); 2] = [
            ("NB negative log-likelihood per cell", |l| l.train_recon, |l| l.val_recon),
            (prior_name, |l| l.train_prior, |l| l.val_prior),
        ];
        for (area, (title, train, val)) in panels.iter().zip(series) {
            let x_min = history.first().map(|l| l.epoch).unwrap_or(1) as f64;
            let x_max = (history.last().map(|l| l.epoch).unwrap_or(1) as f64).max(x_min + 1.0);
            let (lo, hi) = range(history.iter().flat_map(|l| [train(l), val(l)]));
            let mut chart = ChartBuilder::on(area)
                .caption(format!("{model}: {title}"), ("sans-serif", 18))
                .margin(10)
                .x_label_area_size(35)
                .y_label_area_size(70)
                .build_cartesian_2d(x_min..x_max, lo..hi)
                .map_err(|e| e.to_string())?;
            chart.configure_mesh().x_desc("epoch").draw().map_err(|e| e.to_string())?;
            for (name, get, color) in [("train", train, BLUE), ("validation", val, RED)] {
                chart
                    .draw_series(LineSeries::new(history.iter().map(|l| (l.epoch as f64, get(l))), color.stroke_width(2)))
                    .map_err(|e| e.to_string())?
                    .label(name)
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
            }
            if best_epoch > 0 {
                chart
                    .draw_series(LineSeries::new([(best_epoch as f64, lo), (best_epoch as f64, hi)], BLACK.mix(0.4)))
                    .map_err(|e| e.to_string())?
                    .label(format!("best epoch {best_epoch}"))
                    .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.mix(0.4)));
            }
            chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(|e| e.to_string())?;
        }
        Ok(())
    })?)
}

/// A map of d-dimensional latents to the plane: the first two dimensions when d ≤ 2, else the
/// top two principal components of the latents it was fitted on.
pub struct Projection {
    d: usize,
    mean: Vec<f64>,
    /// d × 2, row-major (None: the first two dimensions).
    loadings: Option<Vec<f64>>,
}

impl Projection {
    /// Projects n × d points (row-major).
    pub fn apply(&self, z: &[f32]) -> Vec<(f64, f64)> {
        let d = self.d.max(1);
        z.chunks(d)
            .map(|p| match &self.loadings {
                None => (p[0] as f64, if d >= 2 { p[1] as f64 } else { 0.0 }),
                Some(v) => {
                    let c: Vec<f64> = p.iter().zip(&self.mean).map(|(&x, m)| x as f64 - m).collect();
                    ((0..d).map(|j| c[j] * v[j * 2]).sum(), (0..d).map(|j| c[j] * v[j * 2 + 1]).sum())
                }
            })
            .collect()
    }
}

/// Projects n × d latents to 2-D (see [`Projection`]), returning the points and the projection.
pub fn project_2d(latents: &[f32], d: usize) -> (Vec<(f64, f64)>, Projection) {
    let n = latents.len() / d.max(1);
    if d <= 2 {
        let p = Projection { d, mean: vec![0.0; d], loadings: None };
        return (p.apply(latents), p);
    }
    let mean: Vec<f64> = (0..d).map(|j| (0..n).map(|i| latents[i * d + j] as f64).sum::<f64>() / n.max(1) as f64).collect();
    let centred: Vec<f64> = (0..n * d).map(|i| latents[i] as f64 - mean[i % d]).collect();
    let (_, loadings) = perturbgen::pca::pca(&centred, n, d, 2, 0);
    let p = Projection { d, mean, loadings: Some(loadings) };
    (p.apply(latents), p)
}

/// Three scatter panels of the projected latents: coloured by cell type (with legend), by donor
/// and by compound (the most frequent twelve named, the rest grey); `marks` (the DGD mixture's
/// component means, projected the same way) drawn as black crosses on every panel.
pub fn latent_scatter(path: &Path, points: &[(f64, f64)], cell_type: &[&str], donor: &[&str], compound: &[&str], marks: &[(f64, f64)], title: &str) -> Result<()> {
    Ok(draw_png(path, (2000, 650), |root| {
        let panels = root.split_evenly((1, 3));
        let (xl, xh) = range(points.iter().chain(marks).map(|p| p.0));
        let (yl, yh) = range(points.iter().chain(marks).map(|p| p.1));
        for (area, (labels, what, top)) in panels.iter().zip([(cell_type, "cell type", 20usize), (donor, "donor", 20), (compound, "compound", 12)]) {
            let mut freq: std::collections::BTreeMap<&str, usize> = Default::default();
            for l in labels.iter() {
                *freq.entry(l).or_default() += 1;
            }
            let mut named: Vec<(&str, usize)> = freq.into_iter().collect();
            named.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            named.truncate(top);
            let mut chart = ChartBuilder::on(area)
                .caption(format!("{title}: by {what}"), ("sans-serif", 18))
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(50)
                .build_cartesian_2d(xl..xh, yl..yh)
                .map_err(|e| e.to_string())?;
            chart.configure_mesh().draw().map_err(|e| e.to_string())?;
            let others = points.iter().zip(labels.iter()).filter(|(_, l)| !named.iter().any(|(n, _)| n == *l));
            chart.draw_series(others.map(|(p, _)| Circle::new(*p, 2, BLACK.mix(0.15).filled()))).map_err(|e| e.to_string())?;
            for (k, (name, _)) in named.iter().enumerate() {
                let color = Palette99::pick(k).mix(0.6);
                let pts = points.iter().zip(labels.iter()).filter(|(_, l)| *l == name);
                chart
                    .draw_series(pts.map(|(p, _)| Circle::new(*p, 2, color.filled())))
                    .map_err(|e| e.to_string())?
                    .label(name.to_string())
                    .legend(move |(x, y)| Circle::new((x + 8, y), 4, color.filled()));
            }
            if !marks.is_empty() {
                chart
                    .draw_series(marks.iter().map(|&p| Cross::new(p, 9, BLACK.stroke_width(3))))
                    .map_err(|e| e.to_string())?
                    .label("mixture means")
                    .legend(|(x, y)| Cross::new((x + 8, y), 5, BLACK.stroke_width(2)));
            }
            chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).label_font(("sans-serif", 12)).draw().map_err(|e| e.to_string())?;
        }
        Ok(())
    })?)
}
