//! The leaderboard: every route's metrics on the targets (the `ALL` row of its `pgen-score`
//! table), ranked by one metric, next to the baselines and the noise ceiling, as a table and a
//! figure; and the route whose submission is handed in.
use crate::error::{Error, Result};
use crate::score::Metric;
use std::path::{Path, PathBuf};

/// What a leaderboard row is: a route (a model or a blend), a baseline that needs no model
/// (crate::baseline), or a reference that is not a prediction (the noise ceiling).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Route,
    Baseline,
    Reference,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Route => "route",
            Kind::Baseline => "baseline",
            Kind::Reference => "reference",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub route: String,
    pub kind: Kind,
    /// The clip applied to the route's values (`none` or the bound).
    pub clip: String,
    /// Every metric's overall value, in [`Metric::ALL`] order.
    pub overall: Vec<Option<f64>>,
}

impl Entry {
    pub fn get(&self, m: Metric) -> Option<f64> {
        self.overall[m.index()]
    }
}

/// The clip and the `ALL` row's metrics of a `pgen-score` table.
pub fn read_overall(path: &Path) -> Result<(String, Vec<Option<f64>>)> {
    let mut reader = csv::Reader::from_path(path).map_err(|e| Error::invalid(path, e.to_string()))?;
    let header = reader.headers().map_err(|e| Error::invalid(path, e.to_string()))?.clone();
    let column = |name: &str| header.iter().position(|h| h == name).ok_or_else(|| Error::invalid(path, format!("no column `{name}` (not a pgen-score table?)")));
    let clip_col = column("clip")?;
    let cols: Vec<usize> = Metric::ALL.iter().map(|m| column(m.row_name())).collect::<Result<_>>()?;
    let mut found = None;
    for (i, rec) in reader.records().enumerate() {
        let rec = rec.map_err(|e| Error::invalid(path, e.to_string()))?;
        if rec.get(0) == Some("ALL") {
            if found.is_some() {
                return Err(Error::invalid(path, "more than one ALL row"));
            }
            let values = Metric::ALL
                .iter()
                .zip(&cols)
                .map(|(m, &c)| {
                    let raw = rec.get(c).unwrap_or("");
                    if raw.is_empty() {
                        return Ok(None);
                    }
                    raw.parse().map(Some).map_err(|_| Error::bad_value(path, i as u64 + 1, m.row_name(), "a number", format!("`{raw}`")))
                })
                .collect::<Result<Vec<_>>>()?;
            found = Some((rec.get(clip_col).unwrap_or("").to_string(), values));
        }
    }
    found.ok_or_else(|| Error::invalid(path, "no ALL row (not a pgen-score table?)"))
}

/// Entries from (name, kind, score table) triples, best by `metric` first (ties by name; an
/// undefined value last).
pub fn collect(tables: &[(String, Kind, PathBuf)], metric: Metric) -> Result<Vec<Entry>> {
    let mut out: Vec<Entry> = Vec::new();
    for (route, kind, path) in tables {
        if out.iter().any(|e| &e.route == route) {
            return Err(Error::Data(format!("route `{route}` is given twice")));
        }
        let (clip, overall) = read_overall(path)?;
        out.push(Entry { route: route.clone(), kind: *kind, clip, overall });
    }
    out.sort_by(|a, b| {
        let (x, y) = (a.get(metric), b.get(metric));
        let order = if metric.better(x, y) {
            std::cmp::Ordering::Less
        } else if metric.better(y, x) {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Equal
        };
        order.then_with(|| a.route.cmp(&b.route))
    });
    Ok(out)
}

/// Where `value` sits from the zero baseline (0) to the noise ceiling (1) on `metric`, when both
/// are on the board and the ceiling scores better than zero (on a small data set, two half-size
/// measurements can agree less than zero agrees with the truth: then there is no such scale).
pub fn toward_ceiling(entries: &[Entry], metric: Metric, value: Option<f64>) -> Option<f64> {
    let of = |name: &str| entries.iter().find(|e| e.route == name).and_then(|e| e.get(metric));
    let (zero, ceiling, v) = (of("zero")?, of("ceiling")?, value?);
    if !metric.better(Some(ceiling), Some(zero)) {
        return None;
    }
    // + 0.0: zero's own row is 0, not −0.
    ((ceiling - zero).abs() > 1e-12).then(|| (v - zero) / (ceiling - zero) + 0.0)
}

/// The scores table (`scores/scores.csv`): route, kind, clip, every metric, and the ranking
/// metric's position between zero and the ceiling; best first.
pub fn write_table(path: &Path, entries: &[Entry], metric: Metric) -> Result<()> {
    crate::atomic::write_atomic(path, |w| {
        let mut out = csv::Writer::from_writer(w);
        let mut header = vec!["route", "kind", "clip"];
        header.extend(Metric::ALL.map(Metric::name));
        header.push("toward_ceiling");
        out.write_record(&header)?;
        let fmt = |v: Option<f64>| v.map_or(String::new(), |x| format!("{x:?}"));
        for e in entries {
            let mut rec = vec![e.route.clone(), e.kind.name().to_string(), e.clip.clone()];
            rec.extend(e.overall.iter().map(|v| fmt(*v)));
            rec.push(fmt(toward_ceiling(entries, metric, e.get(metric))));
            out.write_record(&rec)?;
        }
        out.flush()?;
        Ok(())
    })
}

/// The metrics the leaderboard figure shows, one panel each: the ranking metric first.
fn figure_metrics(metric: Metric) -> Vec<Metric> {
    let mut shown = vec![metric];
    for m in [Metric::Mrrmse, Metric::MrrmseClip4, Metric::Pearson, Metric::Top100Overlap] {
        if !shown.contains(&m) {
            shown.push(m);
        }
    }
    shown.truncate(4);
    shown
}

/// The leaderboard figure: one panel per metric (the ranking one first), one bar per route in
/// the ranking's order (best at the top; baselines grey, the submitted route marked), the zero
/// baseline and the noise ceiling as vertical lines.
pub fn plot(path: &Path, entries: &[Entry], chosen: Option<&str>, metric: Metric, title: &str) -> Result<()> {
    use plotters::prelude::*;
    let shown = figure_metrics(metric);
    let bars: Vec<&Entry> = entries.iter().filter(|e| e.kind != Kind::Reference).collect();
    let reference = entries.iter().find(|e| e.kind == Kind::Reference);
    let height = (160 + 34 * bars.len() as u32).max(320);
    crate::plot::draw_png(path, (1500, height), |root| {
        let root = root.titled(title, ("sans-serif", 24)).map_err(|e| e.to_string())?;
        let panels = root.split_evenly((1, shown.len()));
        for (panel, &m) in panels.iter().zip(&shown) {
            let values: Vec<f64> = bars.iter().map(|e| e.get(m).unwrap_or(0.0)).collect();
            let lines: Vec<(String, f64)> = [("zero", entries.iter().find(|e| e.route == "zero")), ("ceiling", reference)]
                .into_iter()
                .filter_map(|(name, e)| e.and_then(|e| e.get(m)).map(|v| (name.to_string(), v)))
                .collect();
            let lo = values.iter().chain(lines.iter().map(|l| &l.1)).fold(0.0f64, |a, &b| a.min(b));
            let hi = values.iter().chain(lines.iter().map(|l| &l.1)).fold(0.0f64, |a, &b| a.max(b)).max(lo + 1e-9);
            let pad = 0.08 * (hi - lo);
            let n = bars.len().max(1) as f64;
            let direction = if m.lower_is_better() { "lower is better" } else { "higher is better" };
            let mut chart = ChartBuilder::on(panel)
                .caption(format!("{m} ({direction})"), ("sans-serif", 18))
                .margin(8)
                .x_label_area_size(30)
                .y_label_area_size(5)
                .build_cartesian_2d((lo - if lo < 0.0 { pad } else { 0.0 })..(hi + pad), -0.5..n - 0.5)
                .map_err(|e| e.to_string())?;
            chart.configure_mesh().disable_y_mesh().max_light_lines(0).y_labels(0).x_labels(5).draw().map_err(|e| e.to_string())?;
            // Best at the top: row 0 is drawn at y = n − 1.
            let y_of = |i: usize| n - 1.0 - i as f64;
            chart
                .draw_series(bars.iter().zip(&values).enumerate().map(|(i, (e, &v))| {
                    let color = if e.kind == Kind::Baseline { RGBColor(150, 150, 150).mix(0.6) } else { GREEN.mix(0.5) };
                    Rectangle::new([(0.0, y_of(i) - 0.4), (v, y_of(i) + 0.4)], color.filled())
                }))
                .map_err(|e| e.to_string())?;
            chart
                .draw_series(bars.iter().zip(&values).enumerate().map(|(i, (e, &v))| {
                    let mark = if Some(e.route.as_str()) == chosen { "  [submitted]" } else { "" };
                    let clip = if e.clip == "none" || e.clip.is_empty() { String::new() } else { format!(" ±{}", e.clip) };
                    Text::new(format!("{}. {}{clip}  {v:.3}{mark}", i + 1, e.route), (lo.min(0.0) + 0.01 * (hi - lo), y_of(i)), ("sans-serif", 14).into_font())
                }))
                .map_err(|e| e.to_string())?;
            for (k, (name, v)) in lines.iter().enumerate() {
                let color = if k == 0 { BLACK } else { RED };
                chart.draw_series(std::iter::once(PathElement::new(vec![(*v, -0.5), (*v, n - 0.5)], color.stroke_width(2)))).map_err(|e| e.to_string())?;
                chart
                    .draw_series(std::iter::once(Text::new(name.clone(), (*v, -0.45 + 0.3 * k as f64), ("sans-serif", 13).into_font().color(&color))))
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    })
}

/// The route to submit: `wanted` if given (it must be one of `routes`), else the best route or
/// baseline (never a reference).
pub fn choose(wanted: Option<&str>, routes: &[String], entries: &[Entry]) -> Result<String> {
    if let Some(w) = wanted {
        if !routes.iter().any(|r| r == w) {
            return Err(Error::param("leaderboard.submit", format!("route `{w}` is not one of the routes {routes:?}")));
        }
        return Ok(w.to_string());
    }
    entries
        .iter()
        .find(|e| e.kind != Kind::Reference)
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
