//! The generation settings chosen on the generative inner hold-out (`generate.source`,
//! `reference`, `emit` set to `auto`): every combination of the `auto` settings' values
//! generates the inner pairs with the model trained without their cells; the combination whose
//! prediction scores best by `leaderboard.metric` against the inner pairs' measured DE (each at
//! its own best clip, as the routes are scored) is what the targets are generated with. The
//! scored pairs are never looked at (`pgen-calibrate`, `pgen-generate --calibration`).
use crate::counterfactual::Source;
use crate::error::{Error, Result};
use crate::generate::{Emit, GenerateParams, Reference};
use perturbgen::clip::{choose_clip, Clip};
use perturbgen::io::de_table::DeTable;
use perturbgen::score::{score, Metric};
use std::path::{Path, PathBuf};

/// One value per `auto`-able generation setting: the pick (or a candidate).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    pub source: Source,
    pub reference: Reference,
    pub emit: Emit,
}

impl Calibration {
    /// The values every `auto` setting can take: each candidate is tried on the inner hold-out.
    pub const SOURCES: [Source; 2] = [Source::Prior, Source::Controls];
    pub const REFERENCES: [Reference; 3] = [Reference::Real, Reference::Generated, Reference::GeneratedControls];
    pub const EMITS: [Emit; 2] = [Emit::Mean, Emit::Sample];

    pub fn read(path: &Path) -> Result<Calibration> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Core(perturbgen::Error::io(path, e)))?;
        let pick: Calibration = serde_json::from_str(&text).map_err(|e| Error::invalid(path, format!("not a calibration pick (pgen-calibrate --out): {e}")))?;
        if pick.source == Source::Auto || pick.reference == Reference::Auto || pick.emit == Emit::Auto {
            return Err(Error::invalid(path, "a pick holds concrete values, not `auto`"));
        }
        Ok(pick)
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::Core(perturbgen::Error::Data(e.to_string())))?;
        perturbgen::atomic::write_atomic(path, |w| writeln!(w, "{text}"))?;
        Ok(())
    }

    /// `params` with its `auto` settings replaced by this pick (the others stay as configured).
    pub fn apply(&self, params: &GenerateParams) -> GenerateParams {
        if !params.auto_keys().is_empty() {
            log::info!("generate.{}: auto → the inner hold-out's pick {}", params.auto_keys().join(", generate."), self.name());
        }
        let mut out = params.clone();
        if out.source == Source::Auto {
            out.source = self.source;
        }
        if out.reference == Reference::Auto {
            out.reference = self.reference;
        }
        if out.emit == Emit::Auto {
            out.emit = self.emit;
        }
        out
    }

    /// Every combination of the values of `params`' `auto` settings, the others as configured:
    /// the candidates the inner hold-out decides between (source, then reference, then emit).
    pub fn candidates(params: &GenerateParams) -> Vec<Calibration> {
        let sources = if params.source == Source::Auto { Self::SOURCES.to_vec() } else { vec![params.source] };
        let references = if params.reference == Reference::Auto { Self::REFERENCES.to_vec() } else { vec![params.reference] };
        let emits = if params.emit == Emit::Auto { Self::EMITS.to_vec() } else { vec![params.emit] };
        let mut out = Vec::new();
        for &source in &sources {
            for &reference in &references {
                for &emit in &emits {
                    out.push(Calibration { source, reference, emit });
                }
            }
        }
        out
    }

    /// The three settings' config words: source, reference, emit.
    pub fn words(&self) -> [String; 3] {
        let word = |v: serde_json::Result<serde_json::Value>| v.ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        [word(serde_json::to_value(self.source)), word(serde_json::to_value(self.reference)), word(serde_json::to_value(self.emit))]
    }

    /// The candidate's name in the workflow's paths: `<source>.<reference>.<emit>`.
    pub fn name(&self) -> String {
        self.words().join(".")
    }
}

impl std::str::FromStr for Calibration {
    type Err = String;
    /// Parses [`Calibration::name`]'s `<source>.<reference>.<emit>`.
    fn from_str(name: &str) -> std::result::Result<Calibration, String> {
        let parts: Vec<&str> = name.split('.').collect();
        let [source, reference, emit] = parts[..] else {
            return Err(format!("`{name}`: expected <source>.<reference>.<emit>, e.g. controls.generated_controls.sample"));
        };
        let word = |w: &str| serde_json::Value::String(w.to_owned());
        let pick = Calibration {
            source: serde_json::from_value(word(source)).map_err(|e| format!("`{name}`: source: {e}"))?,
            reference: serde_json::from_value(word(reference)).map_err(|e| format!("`{name}`: reference: {e}"))?,
            emit: serde_json::from_value(word(emit)).map_err(|e| format!("`{name}`: emit: {e}"))?,
        };
        if pick.source == Source::Auto || pick.reference == Reference::Auto || pick.emit == Emit::Auto {
            return Err(format!("`{name}`: a candidate holds concrete values, not `auto`"));
        }
        Ok(pick)
    }
}

/// A candidate's settings and its prediction of the inner hold-out's pairs.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub settings: Calibration,
    pub prediction: PathBuf,
}

/// How one candidate scored: its best clip, that clip's value of the ranking metric, and its
/// MRRMSE and Pearson at that clip (the table's columns for people).
#[derive(Debug, Clone)]
pub struct Tried {
    pub settings: Calibration,
    pub clip: Clip,
    pub value: Option<f64>,
    pub mrrmse: f64,
    pub pearson: Option<f64>,
}

/// Scores every candidate against the inner pairs' truth and returns them with the index of
/// the best (the first of equals: candidates are in [`Calibration::candidates`] order).
pub fn choose(candidates: &[Candidate], clips: &[Clip], metric: Metric, truth: &DeTable, truth_path: &Path) -> Result<(usize, Vec<Tried>)> {
    if candidates.is_empty() {
        return Err(Error::Core(perturbgen::Error::param("generate", "no calibration candidates to choose from")));
    }
    let mut tried = Vec::with_capacity(candidates.len());
    for c in candidates {
        let prediction = DeTable::read(&c.prediction)?;
        let (clip, _) = choose_clip(clips, metric, truth, &prediction, truth_path, &c.prediction)?;
        let mut clipped = prediction;
        clip.apply(&mut clipped);
        let scores = score(truth, &clipped, truth_path, &c.prediction)?;
        tried.push(Tried { settings: c.settings, clip, value: scores.get(metric), mrrmse: scores.mrrmse, pearson: scores.get(Metric::Pearson) });
    }
    let mut best = 0;
    for i in 1..tried.len() {
        if metric.better(tried[i].value, tried[best].value) {
            best = i;
        }
    }
    Ok((best, tried))
}

/// The candidates' table (CSV): settings, best clip, the ranking metric's name and value there,
/// MRRMSE and Pearson there, whether chosen.
pub fn write_table(path: &Path, tried: &[Tried], chosen: usize, metric: Metric) -> Result<()> {
    let fmt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v}"));
    perturbgen::atomic::write_atomic(path, |w| {
        writeln!(w, "candidate,source,reference,emit,clip,metric,value,mrrmse,pearson,chosen")?;
        for (i, t) in tried.iter().enumerate() {
            let [source, reference, emit] = t.settings.words();
            writeln!(w, "{},{source},{reference},{emit},{},{metric},{},{},{},{}", t.settings.name(), t.clip.label(), fmt(t.value), t.mrrmse, fmt(t.pearson), i == chosen)?;
        }
        Ok(())
    })?;
    Ok(())
}

/// The candidates as a picture: one bar per candidate, its ranking metric on the inner pairs at
/// its best clip, the chosen one in orange (`results/scores/calibration/<model>.png`).
pub fn plot_table(path: &Path, tried: &[Tried], chosen: usize, metric: Metric, title: &str) -> Result<()> {
    use plotters::prelude::*;
    let values: Vec<f64> = tried.iter().map(|t| t.value.unwrap_or(0.0)).collect();
    let low = values.iter().copied().fold(0.0, f64::min);
    let high = values.iter().copied().fold(0.0, f64::max);
    let span = (high - low).max(1e-12);
    let n = tried.len() as f64;
    Ok(perturbgen::plot::draw_png(path, (1100, 120 + 40 * tried.len() as u32), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(10)
            .build_cartesian_2d(low - 0.02 * span..high + 0.85 * span, -0.5..n - 0.5)
            .map_err(|e| e.to_string())?;
        chart.configure_mesh().x_desc(format!("{metric} on the inner hold-out's pairs (each candidate at its best clip)")).disable_y_mesh().y_labels(0).draw().map_err(|e| e.to_string())?;
        chart
            .draw_series(values.iter().enumerate().map(|(i, v)| {
                let colour = if i == chosen { RGBColor(255, 127, 14) } else { RGBColor(31, 119, 180) };
                let y = (tried.len() - 1 - i) as f64;
                Rectangle::new([(0.0, y - 0.38), (*v, y + 0.38)], colour.mix(0.75).filled())
            }))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(tried.iter().enumerate().map(|(i, t)| {
                let y = (tried.len() - 1 - i) as f64;
                let value = t.value.map_or("undefined".into(), |v| format!("{v:.4}"));
                let mark = if i == chosen { "  ← chosen" } else { "" };
                Text::new(format!("{}, clip {}: {value}{mark}", t.settings.name(), t.clip.label()), (high.max(0.0) + 0.02 * span, y + 0.2), ("sans-serif", 14).into_font())
            }))
            .map_err(|e| e.to_string())?;
        Ok(())
    })?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_cover_the_auto_settings_only() {
        let params = GenerateParams { source: Source::Auto, emit: Emit::Auto, reference: Reference::Real, inner_holdout: true, ..Default::default() };
        let names: Vec<String> = Calibration::candidates(&params).iter().map(Calibration::name).collect();
        assert_eq!(names, ["prior.real.mean", "prior.real.sample", "controls.real.mean", "controls.real.sample"]);
        let all = GenerateParams { source: Source::Auto, emit: Emit::Auto, reference: Reference::Auto, inner_holdout: true, ..Default::default() };
        assert_eq!(Calibration::candidates(&all).len(), 12);
        let fixed = GenerateParams::default();
        assert_eq!(Calibration::candidates(&fixed).iter().map(Calibration::name).collect::<Vec<_>>(), ["controls.generated_controls.sample"]);
    }

    #[test]
    fn a_pick_fills_only_the_auto_settings() {
        let params = GenerateParams { source: Source::Auto, emit: Emit::Mean, inner_holdout: true, ..Default::default() };
        let pick = Calibration { source: Source::Prior, reference: Reference::Real, emit: Emit::Sample };
        let applied = pick.apply(&params);
        assert_eq!((applied.source, applied.reference, applied.emit), (Source::Prior, Reference::GeneratedControls, Emit::Mean));
        assert!(applied.ensure_resolved().is_ok());
        assert!(params.ensure_resolved().unwrap_err().to_string().contains("generate.source"));
    }

    #[test]
    fn names_round_trip_and_bad_ones_are_refused() {
        for c in Calibration::candidates(&GenerateParams { source: Source::Auto, emit: Emit::Auto, reference: Reference::Auto, inner_holdout: true, ..Default::default() }) {
            assert_eq!(c.name().parse::<Calibration>().unwrap(), c);
        }
        assert!("controls.real".parse::<Calibration>().unwrap_err().contains("<source>.<reference>.<emit>"));
        assert!("controls.rael.mean".parse::<Calibration>().unwrap_err().contains("reference"));
        assert!("auto.real.mean".parse::<Calibration>().unwrap_err().contains("not `auto`"));
    }
}
