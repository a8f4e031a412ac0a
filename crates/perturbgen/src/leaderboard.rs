//! The leaderboard: every route's MRRMSE on the targets (from its `pgen-score` table), best
//! first, as a table and a bar plot, and the route whose submission is handed in.
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub route: String,
    pub mrrmse: f64,
}

/// The `ALL` row of a `pgen-score` table.
pub fn read_overall(path: &Path) -> Result<f64> {
    let mut reader = csv::Reader::from_path(path).map_err(|e| Error::invalid(path, e.to_string()))?;
    let mut found = None;
    for (i, rec) in reader.records().enumerate() {
        let rec = rec.map_err(|e| Error::invalid(path, e.to_string()))?;
        if rec.get(0) == Some("ALL") {
            if found.is_some() {
                return Err(Error::invalid(path, "more than one ALL row"));
            }
            let raw = rec.get(2).unwrap_or("");
            let v: f64 = raw.parse().map_err(|_| Error::bad_value(path, i as u64 + 1, "rmse", "a number", format!("`{raw}`")))?;
            found = Some(v);
        }
    }
    found.ok_or_else(|| Error::invalid(path, "no ALL row (not a pgen-score table?)"))
}

/// Entries from (route, score table) pairs, best (lowest MRRMSE) first; ties by route name.
pub fn collect(tables: &[(String, PathBuf)]) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    for (route, path) in tables {
        if out.iter().any(|e: &Entry| &e.route == route) {
            return Err(Error::Data(format!("route `{route}` is given twice")));
        }
        out.push(Entry { route: route.clone(), mrrmse: read_overall(path)? });
    }
    out.sort_by(|a, b| a.mrrmse.total_cmp(&b.mrrmse).then_with(|| a.route.cmp(&b.route)));
    Ok(out)
}

/// `route,mrrmse` rows, best first (the layout of `scores/scores.csv`).
pub fn write_table(path: &Path, entries: &[Entry]) -> Result<()> {
    crate::atomic::write_atomic(path, |w| {
        let mut out = csv::Writer::from_writer(w);
        out.write_record(["route", "mrrmse"])?;
        for e in entries {
            out.write_record([e.route.as_str(), &format!("{:?}", e.mrrmse)])?;
        }
        out.flush()?;
        Ok(())
    })
}

/// One bar per route, best at the top; `chosen` is marked.
pub fn plot(path: &Path, entries: &[Entry], chosen: Option<&str>, title: &str) -> Result<()> {
    // bar_panel draws the first bar at the bottom: best last, so it sits at the top.
    let bars: Vec<(String, f64)> =
        entries.iter().enumerate().rev().map(|(i, e)| (format!("{}. {}{}", i + 1, e.route, if Some(e.route.as_str()) == chosen { "  [submitted]" } else { "" }), e.mrrmse)).collect();
    let height = (140 + 40 * bars.len() as u32).max(260);
    crate::plot::draw_png(path, (900, height), |root| crate::plot::bar_panel(root, title, "MRRMSE (lower is better)", &bars))
}

/// The route to submit: `wanted` if given (it must be one of `routes`), else the best entry.
pub fn choose(wanted: Option<&str>, routes: &[String], entries: &[Entry]) -> Result<String> {
    if let Some(w) = wanted {
        if !routes.iter().any(|r| r == w) {
            return Err(Error::param("leaderboard.submit", format!("route `{w}` is not one of the routes {routes:?}")));
        }
        return Ok(w.to_string());
    }
    entries
        .first()
        .map(|e| e.route.clone())
        .ok_or_else(|| Error::Data("leaderboard: no scores to choose the best route from; name the route to submit".into()))
}

/// The write-up's p-value figure: for each table (the truth and routes' predictions), the
/// distribution of its signed −log10 p-values (all pairs × genes) as a line over shared bins,
/// as a fraction of its entries on a log axis (the tails are where routes differ); RMS in the
/// legend.
pub fn plot_value_histograms(path: &Path, tables: &[(String, crate::io::de_table::DeTable)], title: &str) -> Result<()> {
    use plotters::prelude::*;
    if tables.is_empty() {
        return Err(Error::Data("value histogram: no tables".into()));
    }
    let bound = tables.iter().flat_map(|(_, t)| t.values.iter()).fold(0f64, |m, v| m.max(v.abs())).clamp(1.0, 20.0);
    let bins = 80usize;
    let width = 2.0 * bound / bins as f64;
    #[allow(clippy::type_complexity)]
    let curves: Vec<(String, f64, Vec<(f64, f64)>)> = tables
        .iter()
        .map(|(name, t)| {
            let mut counts = vec![0u64; bins];
            for v in &t.values {
                counts[(((v.clamp(-bound, bound) + bound) / width) as usize).min(bins - 1)] += 1;
            }
            let n = t.values.len().max(1) as f64;
            let rms = (t.values.iter().map(|v| v * v).sum::<f64>() / n).sqrt();
            let points = counts.iter().enumerate().filter(|(_, &c)| c > 0).map(|(i, &c)| (-bound + (i as f64 + 0.5) * width, c as f64 / n)).collect();
            (name.clone(), rms, points)
        })
        .collect();
    let ymin = curves.iter().flat_map(|c| c.2.iter().map(|p| p.1)).fold(1.0f64, f64::min).max(1e-7);
    crate::plot::draw_png(path, (1100, 650), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 22))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d(-bound..bound, (ymin * 0.8..1.0).log_scale())
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("signed −log10 p (clipped to the axis)")
            .y_desc("fraction of pair × gene entries")
            // plotters' log-axis ticks are computed in floating point (9.999999999e-5): one
            // significant digit.
            .y_label_formatter(&|v| format!("{v:.0e}"))
            .draw()
            .map_err(|e| e.to_string())?;
        for (k, (name, rms, points)) in curves.iter().enumerate() {
            let color = Palette99::pick(k).to_rgba();
            chart
                .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(if k == 0 { 3 } else { 2 })))
                .map_err(|e| e.to_string())?
                .label(format!("{name} (RMS {rms:.2})"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3)));
        }
        chart.configure_series_labels().background_style(WHITE.mix(0.9)).border_style(BLACK).position(SeriesLabelPosition::UpperRight).draw().map_err(|e| e.to_string())?;
        Ok(())
    })
}
