//! The transfer probe (`pgen-probe`): does a trained model carry a compound's effect to a cell
//! type it never saw treated? For every target pair, the target cell type's own control cells
//! are decoded twice — with the target group's covariates and with their own control well's —
//! and the mean log2 ratio of the two NB means per gene is the model's predicted log fold
//! change; the same with latents drawn from the prior. Each is correlated (Pearson, over genes)
//! with the truth's limma logFC and signed −log10 p, next to the plain mean of the compound's
//! DE over the other cell types (de_train): what a model must beat to be worth its cells.
use super::counterfactual::LatentPools;
use super::data::Conditioning;
use super::loglik::LoadedModel;
use crate::error::{Error, Result};
use candle_core::Tensor;
use perturbgen::io::de_stats::DeStats;
use perturbgen::io::sizes::SizeTable;
use perturbgen::metrics::pearson;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::Path;

/// One target pair's probe.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeRow {
    pub cell_type: String,
    pub sm_name: String,
    /// Control cells decoded (over the pair's plates).
    pub control_cells: usize,
    /// Pearson with the truth's logFC of: the model's LFC from the cell type's own control
    /// latents, from prior draws, and the mean logFC of the other cell types.
    pub logfc_model_controls: f64,
    pub logfc_model_prior: f64,
    pub logfc_mean_other: f64,
    /// The same against the truth's signed −log10 p (the other cell types' mean of theirs).
    pub signed_p_model_controls: f64,
    pub signed_p_model_prior: f64,
    pub signed_p_mean_other: f64,
}

/// Column names of [`ProbeRow`]'s correlations, in [`ProbeRow::values`] order.
pub const PROBE_COLUMNS: [&str; 6] =
    ["logfc_model_controls", "logfc_model_prior", "logfc_mean_other", "signed_p_model_controls", "signed_p_model_prior", "signed_p_mean_other"];

impl ProbeRow {
    pub fn values(&self) -> [f64; 6] {
        [self.logfc_model_controls, self.logfc_model_prior, self.logfc_mean_other, self.signed_p_model_controls, self.signed_p_model_prior, self.signed_p_mean_other]
    }
}

/// Sum over cells of log2(m_treated / m_control) per gene, for `z` (rows × d) decoded with the
/// two conditionings at scale 1 (the ratio does not depend on the scale).
fn log2_ratio_sum(model: &LoadedModel, z: &[f32], treated: &(Vec<f32>, Vec<u32>), control: &(Vec<f32>, Vec<u32>), out: &mut [f64]) -> Result<()> {
    let d = model.meta.config.latent_dim;
    let device = &model.net.device;
    let n = z.len() / d;
    for start in (0..n).step_by(1024) {
        let b = 1024.min(n - start);
        let zt = Tensor::from_vec(z[start * d..(start + b) * d].to_vec(), (b, d), device)?;
        let ones = Tensor::from_vec(vec![1f32; b], b, device)?;
        let means = |(onehot, effects): &(Vec<f32>, Vec<u32>)| -> Result<Vec<f32>> {
            let c = Conditioning::from_vecs(onehot.repeat(b), onehot.len(), effects.repeat(b), effects.len(), b, device)?;
            Ok(model.net.nb_means(&zt, &c, &ones)?.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
        };
        let (mt, mc) = (means(treated)?, means(control)?);
        for (cell_t, cell_c) in mt.chunks(out.len()).zip(mc.chunks(out.len())) {
            for ((o, &t), &c) in out.iter_mut().zip(cell_t).zip(cell_c) {
                // Means are positive under both links; the floor only guards an f32 underflow.
                *o += ((t.max(f32::MIN_POSITIVE) as f64) / (c.max(f32::MIN_POSITIVE) as f64)).log2();
            }
        }
    }
    Ok(())
}

/// The probe of every target pair of `sizes` (its rows not observed), with `pools` from
/// [`crate::counterfactual::control_pools`] over the same table; `truth` holds the target
/// pairs, `train` the other cell types' rows. Pairs without a truth row are left out.
pub fn probe(model: &LoadedModel, sizes: &SizeTable, pools: &LatentPools, truth: &DeStats, train: &DeStats, seed: u64, sizes_path: &Path) -> Result<Vec<ProbeRow>> {
    let g = model.meta.genes.len();
    if truth.genes != model.meta.genes || train.genes != model.meta.genes {
        return Err(Error::invalid(sizes_path, "the truth's or de_train's genes differ from the model's"));
    }
    let conditioning = |row: usize| super::generate::group_conditioning(model, &sizes.rows[row].key, row, sizes_path);
    let (truth_values, train_values) = (truth.table().values, train.table().values);
    let mut pairs: Vec<(String, String)> = sizes.rows.iter().filter(|r| !r.observed).map(|r| (r.key.cell_type.clone(), r.key.sm_name.clone())).collect();
    pairs.sort();
    pairs.dedup();
    let mut out = Vec::new();
    for (cell_type, sm_name) in pairs {
        let Some(t) = truth.keys.iter().position(|k| k.cell_type == cell_type && k.sm_name == sm_name) else { continue };
        let (mut from_controls, mut from_prior, mut cells) = (vec![0f64; g], vec![0f64; g], 0usize);
        for (row, group) in sizes.rows.iter().enumerate().filter(|(_, r)| !r.observed && r.key.cell_type == cell_type && r.key.sm_name == sm_name) {
            // The cell type's control well on the target's plate (else any of its control wells).
            let same_type = |r: &&perturbgen::io::sizes::SizeRow| r.observed && r.key.cell_type == cell_type;
            let Some(control) = sizes.rows.iter().position(|r| same_type(&r) && r.key.plate_name == group.key.plate_name).or_else(|| sizes.rows.iter().position(|r| same_type(&r))) else {
                return Err(Error::invalid(sizes_path, format!("no control well of `{cell_type}` (pgen-sizes --negative-control): the probe decodes the target from its controls")));
            };
            let (treated, own) = (conditioning(row)?, conditioning(control)?);
            let z = &pools.latents[row];
            log2_ratio_sum(model, z, &treated, &own, &mut from_controls)?;
            let n = z.len() / pools.dim;
            let prior = super::generate::draw_prior(model, n, &mut ChaCha8Rng::seed_from_u64(seed.wrapping_add(row as u64)))?;
            log2_ratio_sum(model, &prior, &treated, &own, &mut from_prior)?;
            cells += n;
        }
        let others: Vec<usize> = (0..train.n_rows()).filter(|&i| train.keys[i].sm_name == sm_name && train.keys[i].cell_type != cell_type).collect();
        let mean_of = |values: &[f64]| -> Vec<f64> {
            let mut m = vec![0f64; g];
            for &i in &others {
                m.iter_mut().zip(&values[i * g..(i + 1) * g]).for_each(|(a, v)| *a += v / others.len() as f64);
            }
            m
        };
        let (truth_lfc, truth_p) = (&truth.log_fc[t * g..(t + 1) * g], &truth_values[t * g..(t + 1) * g]);
        let (other_lfc, other_p) = (mean_of(&train.log_fc), mean_of(&train_values));
        let scale = |v: &[f64]| -> Vec<f64> { v.iter().map(|x| x / cells.max(1) as f64).collect() };
        let (mc, mp) = (scale(&from_controls), scale(&from_prior));
        out.push(ProbeRow {
            cell_type,
            sm_name,
            control_cells: cells,
            logfc_model_controls: pearson(&mc, truth_lfc),
            logfc_model_prior: pearson(&mp, truth_lfc),
            logfc_mean_other: if others.is_empty() { 0.0 } else { pearson(&other_lfc, truth_lfc) },
            signed_p_model_controls: pearson(&mc, truth_p),
            signed_p_model_prior: pearson(&mp, truth_p),
            signed_p_mean_other: if others.is_empty() { 0.0 } else { pearson(&other_p, truth_p) },
        });
    }
    Ok(out)
}

/// Beyond this many target pairs the bars would not fit a readable picture (Kaggle: 255):
/// [`plot_probe_scatter`] instead.
const MAX_BARS: usize = 40;

/// The probe as a picture: per target pair, three bars per panel — the model's LFC from the
/// cell type's own controls, from prior draws, and the other cell types' mean — their Pearson
/// correlation with the truth's logFC (left) and signed −log10 p (right).
pub fn plot_probe(path: &Path, rows: &[ProbeRow], model: &str) -> Result<()> {
    if rows.len() > MAX_BARS {
        return plot_probe_scatter(path, rows, model);
    }
    use plotters::prelude::*;
    const KINDS: [(&str, RGBColor); 3] = [("model, own controls", RGBColor(31, 119, 180)), ("model, prior draws", RGBColor(158, 202, 225)), ("other cell types' mean", RGBColor(150, 150, 150))];
    let height = 160 + 70 * rows.len() as u32;
    Ok(perturbgen::plot::draw_png(path, (1300, height), |root| {
        let panels = root.split_evenly((1, 2));
        type Get = fn(&ProbeRow) -> [f64; 3];
        let series: [(&str, Get); 2] = [
            ("against the truth's logFC", |r| [r.logfc_model_controls, r.logfc_model_prior, r.logfc_mean_other]),
            ("against the truth's signed −log10 p", |r| [r.signed_p_model_controls, r.signed_p_model_prior, r.signed_p_mean_other]),
        ];
        let n = rows.len() as f64;
        for (area, (title, get)) in panels.iter().zip(series) {
            let mut chart = ChartBuilder::on(area)
                .caption(format!("{model}: Pearson {title}"), ("sans-serif", 17))
                .margin(10)
                .x_label_area_size(35)
                .y_label_area_size(10)
                .build_cartesian_2d(-1.0..1.0, -0.5..n - 0.5)
                .map_err(|e| e.to_string())?;
            chart.configure_mesh().x_desc("Pearson correlation").disable_y_mesh().y_labels(0).draw().map_err(|e| e.to_string())?;
            for (k, (label, colour)) in KINDS.iter().enumerate() {
                let bars = rows.iter().enumerate().map(|(i, r)| {
                    let y = i as f64 - 0.3 + 0.2 * k as f64;
                    Rectangle::new([(0.0, y - 0.09), (get(r)[k], y + 0.09)], colour.filled())
                });
                chart.draw_series(bars).map_err(|e| e.to_string())?.label(*label).legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], colour.filled()));
            }
            chart
                .draw_series(rows.iter().enumerate().map(|(i, r)| Text::new(format!("{} / {}", r.cell_type, r.sm_name), (-0.98, i as f64 + 0.42), ("sans-serif", 14).into_font())))
                .map_err(|e| e.to_string())?;
            chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).position(SeriesLabelPosition::LowerLeft).draw().map_err(|e| e.to_string())?;
        }
        Ok(())
    })?)
}

/// The probe for many target pairs: one point per pair, the other cell types' mean's Pearson
/// (x) against the model's from its own controls (y), coloured by cell type, against the
/// truth's logFC (left) and signed −log10 p (right). Points above the diagonal are pairs where
/// the model carries the compound's effect better than the plain mean; the caption has the means.
fn plot_probe_scatter(path: &Path, rows: &[ProbeRow], model: &str) -> Result<()> {
    use plotters::prelude::*;
    const COLOURS: [RGBColor; 6] =
        [RGBColor(31, 119, 180), RGBColor(255, 127, 14), RGBColor(44, 160, 44), RGBColor(214, 39, 40), RGBColor(148, 103, 189), RGBColor(140, 86, 75)];
    let mut cell_types: Vec<&str> = rows.iter().map(|r| r.cell_type.as_str()).collect();
    cell_types.sort_unstable();
    cell_types.dedup();
    let mean = |get: fn(&ProbeRow) -> f64| rows.iter().map(get).sum::<f64>() / rows.len() as f64;
    Ok(perturbgen::plot::draw_png(path, (1300, 680), |root| {
        let panels = root.split_evenly((1, 2));
        type Get = fn(&ProbeRow) -> (f64, f64);
        let series: [(&str, Get, f64, f64); 2] = [
            ("truth's logFC", |r| (r.logfc_mean_other, r.logfc_model_controls), mean(|r| r.logfc_mean_other), mean(|r| r.logfc_model_controls)),
            ("truth's signed −log10 p", |r| (r.signed_p_mean_other, r.signed_p_model_controls), mean(|r| r.signed_p_mean_other), mean(|r| r.signed_p_model_controls)),
        ];
        for (area, (title, get, mean_other, mean_model)) in panels.iter().zip(series) {
            let mut chart = ChartBuilder::on(area)
                .caption(format!("{model}, {} pairs: Pearson with the {title}", rows.len()), ("sans-serif", 17))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(50)
                .build_cartesian_2d(-1.0..1.0, -1.0..1.0)
                .map_err(|e| e.to_string())?;
            chart
                .configure_mesh()
                .x_desc(format!("other cell types' mean (mean {mean_other:.3})"))
                .y_desc(format!("model, own controls (mean {mean_model:.3})"))
                .draw()
                .map_err(|e| e.to_string())?;
            chart.draw_series(LineSeries::new([(-1.0, -1.0), (1.0, 1.0)], BLACK.mix(0.4))).map_err(|e| e.to_string())?;
            for (k, cell_type) in cell_types.iter().enumerate() {
                let colour = COLOURS[k % COLOURS.len()];
                let points = rows.iter().filter(|r| r.cell_type == *cell_type).map(|r| Circle::new(get(r), 3, colour.mix(0.7).filled()));
                chart
                    .draw_series(points)
                    .map_err(|e| e.to_string())?
                    .label(*cell_type)
                    .legend(move |(x, y)| Circle::new((x + 6, y), 4, colour.filled()));
            }
            chart.draw_series([Cross::new((mean_other, mean_model), 9, BLACK.stroke_width(3))]).map_err(|e| e.to_string())?.label("mean").legend(|(x, y)| Cross::new((x + 6, y), 5, BLACK.stroke_width(2)));
            chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).position(SeriesLabelPosition::UpperLeft).draw().map_err(|e| e.to_string())?;
        }
        Ok(())
    })?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize) -> Vec<ProbeRow> {
        (0..n)
            .map(|i| {
                let x = i as f64 / n as f64;
                ProbeRow {
                    cell_type: if i % 2 == 0 { "B cells" } else { "Myeloid cells" }.into(),
                    sm_name: format!("compound {i}"),
                    control_cells: 10,
                    logfc_model_controls: x - 0.5,
                    logfc_model_prior: x - 0.6,
                    logfc_mean_other: 0.5 - x,
                    signed_p_model_controls: x * 0.8,
                    signed_p_model_prior: x * 0.7,
                    signed_p_mean_other: -x * 0.5,
                }
            })
            .collect()
    }

    fn png_size(path: &Path) -> (u32, u32) {
        // The IHDR chunk: width and height, big-endian, at bytes 16..24.
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        (u32::from_be_bytes(bytes[16..20].try_into().unwrap()), u32::from_be_bytes(bytes[20..24].try_into().unwrap()))
    }

    #[test]
    fn few_pairs_are_bars_many_pairs_one_readable_scatter() {
        let dir = tempfile::tempdir().unwrap();
        let few = dir.path().join("few.png");
        plot_probe(&few, &rows(3), "dgd").unwrap();
        assert_eq!(png_size(&few), (1300, 160 + 70 * 3));
        // 255 pairs (Kaggle's targets) as bars would be 18,000 px tall: one fixed-size scatter.
        let many = dir.path().join("many.png");
        plot_probe(&many, &rows(255), "dgd").unwrap();
        assert_eq!(png_size(&many), (1300, 680));
    }
}
