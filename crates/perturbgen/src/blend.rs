//! `pgen-blend`: weighted means of prediction tables, with weights given or fitted on an inner
//! hold-out drawn from the training pairs only (the scored pairs never influence the weights).
use crate::error::{Error, Result};
use crate::io::de_table::DeTable;
use crate::io::id_map::{IdMap, IdMapRow};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// One named prediction table and the file it came from.
pub struct Input {
    pub route: String,
    pub table: DeTable,
    pub path: PathBuf,
}

/// `other`'s values in `reference`'s row and gene order; the pairs and genes must be the same sets.
/// A gene set differing names the file with the gene the other lacks (the reference's own
/// extra gene is the reference's fault, not the other table's).
pub fn align(reference: &DeTable, reference_path: &Path, other: &DeTable, other_path: &Path) -> Result<Vec<f64>> {
    if other.genes.len() != reference.genes.len() {
        let (more, more_path, fewer, fewer_path) =
            if reference.genes.len() > other.genes.len() { (reference, reference_path, other, other_path) } else { (other, other_path, reference, reference_path) };
        let known: std::collections::HashSet<&str> = fewer.genes.iter().map(String::as_str).collect();
        let extra = more.genes.iter().find(|g| !known.contains(g.as_str())).map(String::as_str).unwrap_or("?");
        return Err(Error::invalid(
            more_path,
            format!("{} genes where {} has {}: gene `{extra}` is not in it", more.genes.len(), fewer_path.display(), fewer.genes.len()),
        ));
    }
    if other.n_rows() != reference.n_rows() {
        return Err(Error::invalid(other_path, format!("{} rows, expected {} (the same pairs as the first table)", other.n_rows(), reference.n_rows())));
    }
    let gi: HashMap<&str, usize> = other.genes.iter().enumerate().map(|(i, g)| (g.as_str(), i)).collect();
    let order: Vec<usize> = reference
        .genes
        .iter()
        .map(|g| gi.get(g.as_str()).copied().ok_or_else(|| Error::invalid(other_path, format!("gene `{g}` is missing"))))
        .collect::<Result<_>>()?;
    let ri: HashMap<(&str, &str), usize> = other.keys.iter().enumerate().map(|(i, k)| ((k.cell_type.as_str(), k.sm_name.as_str()), i)).collect();
    let mut out = Vec::with_capacity(reference.values.len());
    for k in &reference.keys {
        let j = *ri.get(&(k.cell_type.as_str(), k.sm_name.as_str())).ok_or_else(|| Error::invalid(other_path, format!("no row for the pair ({}, {})", k.cell_type, k.sm_name)))?;
        let row = other.row(j);
        out.extend(order.iter().map(|&g| row[g]));
    }
    Ok(out)
}

/// Checks weights: one per input, finite, non-negative, summing to 1 (within 1e-6).
pub fn check_weights(weights: &[f64], n: usize) -> Result<()> {
    if weights.len() != n {
        return Err(Error::param("--weights", format!("{} weights for {n} prediction tables", weights.len())));
    }
    if weights.iter().any(|w| !w.is_finite() || *w < 0.0) {
        return Err(Error::param("--weights", format!("must be non-negative numbers, found {weights:?}")));
    }
    let sum: f64 = weights.iter().sum();
    if (sum - 1.0).abs() > 1e-6 {
        return Err(Error::param("--weights", format!("must sum to 1, found {weights:?} (sum {sum})")));
    }
    Ok(())
}

/// Σ w_k · table_k, in the first table's row and gene order.
pub fn blend(inputs: &[Input], weights: &[f64]) -> Result<DeTable> {
    let Some(first) = inputs.first() else { return Err(Error::Data("blend: no prediction tables".into())) };
    check_weights(weights, inputs.len())?;
    let mut values = vec![0f64; first.table.values.len()];
    for (inp, &w) in inputs.iter().zip(weights) {
        let v = align(&first.table, &first.path, &inp.table, &inp.path)?;
        for (o, x) in values.iter_mut().zip(v) {
            *o += w * x;
        }
    }
    Ok(DeTable { keys: first.table.keys.clone(), genes: first.table.genes.clone(), values })
}

/// MRRMSE of Σ w_k · pred_k given each row's Gram matrix of residuals
/// (G[k][l] = mean over genes of (truth − pred_k)(truth − pred_l)).
fn objective(grams: &[Vec<f64>], k: usize, w: &[f64]) -> (f64, Vec<f64>) {
    let mut f = 0.0;
    let mut grad = vec![0.0; k];
    for g in grams {
        let gw: Vec<f64> = (0..k).map(|a| (0..k).map(|b| g[a * k + b] * w[b]).sum()).collect();
        let q: f64 = (0..k).map(|a| w[a] * gw[a]).sum::<f64>().max(0.0);
        let r = q.sqrt();
        f += r;
        if r > 1e-300 {
            for a in 0..k {
                grad[a] += gw[a] / r;
            }
        }
    }
    let n = grams.len() as f64;
    (f / n, grad.into_iter().map(|x| x / n).collect())
}

/// Euclidean projection onto the probability simplex.
fn project_simplex(v: &[f64]) -> Vec<f64> {
    let mut u = v.to_vec();
    u.sort_by(|a, b| b.total_cmp(a));
    let (mut css, mut theta) = (0.0, 0.0);
    for (i, &x) in u.iter().enumerate() {
        css += x;
        let t = (css - 1.0) / (i + 1) as f64;
        if x - t > 0.0 {
            theta = t;
        }
    }
    v.iter().map(|x| (x - theta).max(0.0)).collect()
}

/// Weights (non-negative, summing to 1) minimising the MRRMSE of the blend against `truth`,
/// and that MRRMSE. The objective is convex in the weights; projected gradient descent with
/// backtracking, started from equal weights, also compared with every single table.
pub fn fit_weights(truth: &DeTable, inputs: &[Input], truth_path: &Path) -> Result<(Vec<f64>, f64)> {
    let k = inputs.len();
    if k == 0 {
        return Err(Error::Data("blend: no prediction tables to weigh".into()));
    }
    if truth.n_rows() == 0 {
        return Err(Error::invalid(truth_path, "no rows to fit blend weights on"));
    }
    let aligned: Vec<Vec<f64>> = inputs.iter().map(|i| align(truth, truth_path, &i.table, &i.path)).collect::<Result<_>>()?;
    let ng = truth.genes.len();
    let grams: Vec<Vec<f64>> = (0..truth.n_rows())
        .map(|r| {
            let t = truth.row(r);
            let res: Vec<Vec<f64>> = aligned.iter().map(|a| (0..ng).map(|g| t[g] - a[r * ng + g]).collect()).collect();
            let mut gram = vec![0.0; k * k];
            for a in 0..k {
                for b in a..k {
                    let v = res[a].iter().zip(&res[b]).map(|(x, y)| x * y).sum::<f64>() / ng as f64;
                    gram[a * k + b] = v;
                    gram[b * k + a] = v;
                }
            }
            gram
        })
        .collect();
    let mut w = vec![1.0 / k as f64; k];
    let (mut f, mut grad) = objective(&grams, k, &w);
    let mut step = 1.0;
    for _ in 0..2000 {
        let mut improved = false;
        while step > 1e-12 {
            let cand = project_simplex(&w.iter().zip(&grad).map(|(x, g)| x - step * g).collect::<Vec<_>>());
            let (fc, gc) = objective(&grams, k, &cand);
            if fc < f - 1e-15 {
                let moved: f64 = cand.iter().zip(&w).map(|(a, b)| (a - b).abs()).sum();
                w = cand;
                f = fc;
                grad = gc;
                step *= 2.0;
                improved = moved > 1e-13;
                break;
            }
            step /= 2.0;
        }
        if !improved {
            break;
        }
    }
    for v in 0..k {
        let mut e = vec![0.0; k];
        e[v] = 1.0;
        let (fe, _) = objective(&grams, k, &e);
        if fe < f {
            w = e;
            f = fe;
        }
    }
    Ok((w, f))
}

/// An inner hold-out drawn from the training pairs: for each of `cell_types`, `draw` of its
/// measured compounds (seeded; only compounds also measured in another cell type, so they stay
/// known) — the same kind of pair as the real targets. Returns (inner training table, inner
/// targets, their true DE values).
pub fn inner_holdout(de_train: &DeTable, cell_types: &[String], draw: usize, seed: u64, path: &Path) -> Result<(DeTable, IdMap, DeTable)> {
    if de_train.n_rows() == 0 {
        return Err(Error::invalid(path, "the training DE table has no rows: no inner hold-out can be drawn"));
    }
    let mut cell_count: BTreeMap<&str, usize> = BTreeMap::new();
    for k in &de_train.keys {
        *cell_count.entry(&k.sm_name).or_default() += 1;
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut held: Vec<usize> = Vec::new();
    // A target cell type measured only under the negative control has no rows to hold out;
    // when no given cell type has any, every cell type of the table serves (the inner pairs
    // then stand for "a compound never measured in this cell type" all the same).
    let with_rows: Vec<String> = cell_types.iter().filter(|ct| de_train.keys.iter().any(|k| &k.cell_type == *ct)).cloned().collect();
    for ct in cell_types.iter().filter(|ct| !with_rows.contains(ct)) {
        log::info!("inner hold-out: cell type `{ct}` has no training DE rows; skipped");
    }
    let fallback = with_rows.is_empty();
    let cell_types: Vec<String> = if fallback {
        de_train.keys.iter().map(|k| k.cell_type.clone()).collect::<std::collections::BTreeSet<_>>().into_iter().collect()
    } else {
        with_rows
    };
    for ct in &cell_types {
        let mut rows: Vec<usize> = (0..de_train.n_rows()).filter(|&i| &de_train.keys[i].cell_type == ct && cell_count[de_train.keys[i].sm_name.as_str()] > 1).collect();
        if rows.is_empty() {
            if fallback {
                continue;
            }
            return Err(Error::invalid(path, format!("cell type `{ct}` has no compound also measured in another cell type: no inner hold-out pair for it")));
        }
        // Keep at least one measured compound of the cell type in the inner training table.
        let n_ct = de_train.keys.iter().filter(|k| &k.cell_type == ct).count();
        let take = draw.min(rows.len()).min(n_ct.saturating_sub(1)).max(1);
        rows.shuffle(&mut rng);
        // ... and every held compound measured somewhere in it (else it has no features).
        let mut taken = 0;
        for i in rows {
            let left = cell_count.get_mut(de_train.keys[i].sm_name.as_str()).expect("counted");
            if taken < take && *left > 1 {
                *left -= 1;
                held.push(i);
                taken += 1;
            }
        }
    }
    if held.is_empty() {
        return Err(Error::invalid(path, "no inner hold-out pair can be drawn: every compound would leave the training table"));
    }
    held.sort_unstable();
    held.dedup();
    let is_held: Vec<bool> = (0..de_train.n_rows()).map(|i| held.binary_search(&i).is_ok()).collect();
    let pick = |want: bool| {
        let mut t = DeTable { genes: de_train.genes.clone(), ..Default::default() };
        for i in (0..de_train.n_rows()).filter(|&i| is_held[i] == want) {
            t.keys.push(de_train.keys[i].clone());
            t.values.extend_from_slice(de_train.row(i));
        }
        t
    };
    let (train, truth) = (pick(false), pick(true));
    let targets = IdMap { rows: truth.keys.iter().enumerate().map(|(i, k)| IdMapRow { id: i as i64, cell_type: k.cell_type.clone(), sm_name: k.sm_name.clone() }).collect() };
    Ok((train, targets, truth))
}

/// The weights as a two-column CSV (`route, weight`) with the inner-hold-out MRRMSE of the
/// blend and of each route when fitted.
pub fn write_weights(path: &Path, routes: &[String], weights: &[f64], fitted: Option<(f64, &[f64])>) -> Result<()> {
    crate::atomic::write_atomic(path, |w| {
        let mut out = csv::Writer::from_writer(w);
        out.write_record(["route", "weight", "inner_mrrmse"])?;
        for (i, (r, wt)) in routes.iter().zip(weights).enumerate() {
            let s = fitted.map(|(_, singles)| format!("{:?}", singles[i])).unwrap_or_default();
            out.write_record([r.as_str(), &format!("{wt:?}"), &s])?;
        }
        if let Some((f, _)) = fitted {
            out.write_record(["BLEND", "1.0", &format!("{f:?}")])?;
        }
        out.flush()?;
        Ok(())
    })
}

/// How replicate runs of a route (generation with different seeds) are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Combine {
    /// The mean of the runs' signed −log10 p-values.
    #[default]
    Mean,
    /// Their median (robust to a run with an outlying p-value).
    Median,
}

/// The runs' values aligned to the first run's rows and genes (one Vec per run).
fn aligned_runs(runs: &[Input]) -> Result<Vec<Vec<f64>>> {
    let Some(first) = runs.first() else { return Err(Error::Data("combine: no runs".into())) };
    runs.iter().map(|r| align(&first.table, &first.path, &r.table, &r.path)).collect()
}

fn combine_values(values: &[Vec<f64>], how: Combine) -> Vec<f64> {
    let n = values.first().map_or(0, |v| v.len());
    match how {
        Combine::Mean => (0..n).map(|i| values.iter().map(|v| v[i]).sum::<f64>() / values.len() as f64).collect(),
        Combine::Median => (0..n).map(|i| crate::stats::median(&mut values.iter().map(|v| v[i]).collect::<Vec<_>>())).collect(),
    }
}

/// Combines replicate runs entry by entry (mean or median), in the first run's order.
pub fn combine_runs(runs: &[Input], how: Combine) -> Result<DeTable> {
    let values = aligned_runs(runs)?;
    let first = &runs[0].table;
    Ok(DeTable { keys: first.keys.clone(), genes: first.genes.clone(), values: combine_values(&values, how) })
}

/// One row of the replicate report: the first `n_runs` runs combined.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicateRow {
    pub n_runs: usize,
    /// MRRMSE of the combination against the truth (when there is one).
    pub mrrmse: Option<f64>,
    /// Mean over entries of the standard deviation between those runs (NaN for one run).
    pub run_sd: f64,
    /// run_sd / √n_runs: the spread left in their mean.
    pub mean_se: f64,
}

/// How the between-run spread and the MRRMSE change as runs are added (1, 2, …, all).
pub fn replicate_curve(runs: &[Input], how: Combine, truth: Option<(&DeTable, &Path)>) -> Result<Vec<ReplicateRow>> {
    let values = aligned_runs(runs)?;
    let first = &runs[0].table;
    let n = values[0].len();
    (1..=values.len())
        .map(|k| {
            let sub = &values[..k];
            let run_sd = if k < 2 {
                f64::NAN
            } else {
                (0..n)
                    .map(|i| {
                        let m = sub.iter().map(|v| v[i]).sum::<f64>() / k as f64;
                        (sub.iter().map(|v| (v[i] - m).powi(2)).sum::<f64>() / (k - 1) as f64).sqrt()
                    })
                    .sum::<f64>()
                    / n as f64
            };
            let mrrmse = match truth {
                Some((t, t_path)) => {
                    let table = DeTable { keys: first.keys.clone(), genes: first.genes.clone(), values: combine_values(sub, how) };
                    Some(crate::score::score(t, &table, t_path, &runs[0].path)?.mrrmse)
                }
                None => None,
            };
            Ok(ReplicateRow { n_runs: k, mrrmse, run_sd, mean_se: run_sd / (k as f64).sqrt() })
        })
        .collect()
}

/// The replicate report as CSV (n_runs, mrrmse, run_sd, mean_se).
pub fn write_replicates(path: &Path, rows: &[ReplicateRow]) -> Result<()> {
    crate::atomic::write_atomic(path, |w| {
        writeln!(w, "n_runs,mrrmse,run_sd,mean_se")?;
        for r in rows {
            let m = r.mrrmse.map(|v| format!("{v:.6}")).unwrap_or_default();
            writeln!(w, "{},{m},{:.6},{:.6}", r.n_runs, r.run_sd, r.mean_se)?;
        }
        Ok(())
    })
}

/// Two panels: MRRMSE of the combination and the spread left in it, against the number of runs.
pub fn plot_replicates(path: &Path, rows: &[ReplicateRow], title: &str) -> Result<()> {
    use plotters::prelude::*;
    let panels: [(&str, Vec<(f64, f64)>); 2] = [
        ("MRRMSE of the combined runs", rows.iter().filter_map(|r| r.mrrmse.map(|m| (r.n_runs as f64, m))).collect()),
        ("between-run SD / √n (spread left in the mean)", rows.iter().filter(|r| r.mean_se.is_finite()).map(|r| (r.n_runs as f64, r.mean_se)).collect()),
    ];
    crate::plot::draw_png(path, (1200, 500), |root| {
        let root = root.titled(title, ("sans-serif", 22)).map_err(|e| e.to_string())?;
        for (area, (name, points)) in root.split_evenly((1, 2)).iter().zip(&panels) {
            let (lo, hi) = points.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.1), b.max(p.1)));
            let (lo, hi) = if points.is_empty() { (0.0, 1.0) } else { (lo - 0.05 * (hi - lo).max(1e-3), hi + 0.05 * (hi - lo).max(1e-3)) };
            let mut chart = ChartBuilder::on(area)
                .caption(*name, ("sans-serif", 18))
                .margin(15)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(0.5..(rows.len() as f64 + 0.5), lo..hi)
                .map_err(|e| e.to_string())?;
            chart.configure_mesh().x_desc("runs combined").x_labels(rows.len().min(20)).draw().map_err(|e| e.to_string())?;
            chart.draw_series(LineSeries::new(points.iter().copied(), BLUE.stroke_width(2))).map_err(|e| e.to_string())?;
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, BLUE.filled()))).map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}
