//! The clip of a route's values: a prediction beyond a bound the truth rarely passes can only
//! add error where the truth is cut (OP3 clips its truth to ±4, SPEC §5). A route's clip is
//! chosen among candidates on its inner hold-out run, by the leaderboard's metric, like the
//! blends' weights; it is applied before scoring and in the submission.
use crate::error::{Error, Result};
use crate::io::de_table::DeTable;
use crate::score::{score, Metric};
use std::path::Path;

/// No clip, or the values clipped to ±bound.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clip(pub Option<f64>);

impl Clip {
    pub const NONE: Clip = Clip(None);

    /// A bound must be a positive number.
    pub fn new(bound: Option<f64>) -> Result<Clip> {
        match bound {
            Some(b) if !(b.is_finite() && b > 0.0) => Err(Error::param("clip", format!("{b}: a clip is a positive number (or none)"))),
            _ => Ok(Clip(bound)),
        }
    }

    pub fn apply(self, table: &mut DeTable) {
        if let Some(b) = self.0 {
            for v in &mut table.values {
                *v = v.clamp(-b, b);
            }
        }
    }

    /// `none` or the bound (the clip files' content and the scores' `clip` column).
    pub fn label(self) -> String {
        self.0.map_or("none".into(), |b| format!("{b:?}"))
    }

    /// The content of a clip file (`none` or a positive number), `path` named on error.
    pub fn parse(text: &str, path: &Path) -> Result<Clip> {
        let t = text.trim();
        if t == "none" {
            return Ok(Clip::NONE);
        }
        let b: f64 = t.parse().map_err(|_| Error::invalid(path, format!("`{t}`: expected `none` or a positive number")))?;
        Clip::new(Some(b)).map_err(|e| Error::invalid(path, e.to_string()))
    }

    pub fn read(path: &Path) -> Result<Clip> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::invalid(path, e.to_string()))?;
        Clip::parse(&text, path)
    }

    pub fn write(self, path: &Path) -> Result<()> {
        crate::atomic::write_atomic(path, |w| {
            writeln!(w, "{}", self.label())?;
            Ok(())
        })
    }
}

/// Each candidate's score by `metric` on (truth, prediction), and the best one (the first of
/// equals, so list `none` first to prefer no clip).
pub fn choose_clip(candidates: &[Clip], metric: Metric, truth: &DeTable, prediction: &DeTable, truth_path: &Path, prediction_path: &Path) -> Result<(Clip, Vec<(Clip, Option<f64>)>)> {
    if candidates.is_empty() {
        return Err(Error::param("clip", "no candidates to choose from"));
    }
    let mut tried = Vec::with_capacity(candidates.len());
    for &c in candidates {
        let mut clipped = prediction.clone();
        c.apply(&mut clipped);
        tried.push((c, score(truth, &clipped, truth_path, prediction_path)?.get(metric)));
    }
    let mut best = 0;
    for i in 1..tried.len() {
        if metric.better(tried[i].1, tried[best].1) {
            best = i;
        }
    }
    Ok((tried[best].0, tried))
}
