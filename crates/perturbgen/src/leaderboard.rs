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
