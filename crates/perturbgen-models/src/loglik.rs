//! The write-up's proposed metric: the NB log-likelihood of held-out cells' counts under the
//! per-cell, per-gene distributions a model predicts (DGD: latents fitted for those cells with
//! everything else frozen; VAE: the encoder mean), and the baseline it must beat: a per-gene NB
//! whose mean is the training mean of the cell's (cell type, compound) group.
use super::checkpoint;
use super::config::ModelKind;
use super::data::{obs_column, ModelData};
use super::nb_loss::nb_log_likelihood;
use super::network::Network;
use super::train::{add_rows, Latents};
use perturbgen::cells::Cells;
use crate::error::{Error, Result};
use candle_core::{Device, Tensor};
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// A trained model loaded for scoring or generation.
pub struct LoadedModel {
    pub net: Network,
    pub meta: checkpoint::CheckpointMeta,
    /// DGD: the training and validation cells' latents of the saved epoch (`meta.train_ids`
    /// then `meta.val_ids`, row-major × latent_dim); empty for the VAE.
    pub cell_latents: Vec<f32>,
}

impl LoadedModel {
    /// `dir/model.*` (the best epoch).
    pub fn load(dir: &Path, device: &Device) -> Result<Self> {
        let (meta, tensors) = checkpoint::load(dir, "model", device)?;
        let net = Network::new(meta.config.clone(), meta.covariates.clone(), meta.genes.clone(), device)?;
        let (st_path, _) = checkpoint::paths(dir, "model");
        net.load(&tensors).map_err(|e| Error::invalid(&st_path, e.to_string()))?;
        let mut cell_latents = Vec::new();
        if meta.config.model == ModelKind::Dgd {
            for name in ["latent.train", "latent.val"] {
                cell_latents.extend(checkpoint::tensor(&tensors, name, &st_path)?.flatten_all()?.to_vec1::<f32>()?);
            }
            let want = (meta.train_ids.len() + meta.val_ids.len()) * meta.config.latent_dim;
            if cell_latents.len() != want {
                return Err(Error::invalid(&st_path, format!("{} latent values for {} cells × {} dimensions", cell_latents.len(), want / meta.config.latent_dim.max(1), meta.config.latent_dim)));
            }
        }
        Ok(Self { net, meta, cell_latents })
    }

    /// Prepares cells for this model: same genes in the same order, known covariate levels.
    pub fn data(&self, cells: Cells, counts_path: &Path, obs_path: &Path) -> Result<ModelData> {
        if cells.counts.genes != self.meta.genes {
            return Err(Error::invalid(counts_path, format!("genes differ from the model's ({} vs {} genes, or another order)", cells.counts.genes.len(), self.meta.genes.len())));
        }
        ModelData::new(cells, self.meta.config.scale, &self.meta.covariates, obs_path)
    }

    /// Per-cell log-likelihood (summed over genes) of `data` under the model.
    pub fn loglik(&self, data: &ModelData, fit_steps: usize, on_step: &dyn Fn()) -> Result<Vec<f64>> {
        let cfg = &self.meta.config;
        let all: Vec<usize> = (0..data.len()).collect();
        let device = &self.net.device;
        let z = match cfg.model {
            ModelKind::Dgd => self.fit_latents(data, fit_steps, on_step)?.values,
            ModelKind::Nbvae => {
                let z = self.net.encoder_means(data, &all)?;
                on_step();
                z
            }
        };
        let d = cfg.latent_dim;
        let mut out = Vec::with_capacity(data.len());
        for rows in all.chunks(cfg.batch_size) {
            let zs: Vec<f32> = rows.iter().flat_map(|&r| z[r * d..(r + 1) * d].iter().copied()).collect();
            let zt = Tensor::from_vec(zs, (rows.len(), d), device)?;
            let nll = self.net.decode_nll(&zt, &data.conditioning(rows, device)?, Arc::new(data.batch(rows)), false, None)?;
            out.extend(nll.to_dtype(candle_core::DType::F64)?.to_vec1::<f64>()?.into_iter().map(|v| -v));
        }
        Ok(out)
    }

    /// DGD: new cells' latents, fitted by full-pass Adam steps on NB NLL − log p(z) with the
    /// decoder, dispersions and mixture frozen (how validation latents are fitted in training).
    pub fn fit_latents(&self, data: &ModelData, steps: usize, on_step: &dyn Fn()) -> Result<Latents> {
        let cfg = &self.meta.config;
        let d = cfg.latent_dim;
        let mut latents = Latents::zeros(data.len(), d);
        let all: Vec<usize> = (0..data.len()).collect();
        for _ in 0..steps {
            let mut acc = vec![0f32; data.len() * d];
            for rows in all.chunks(cfg.batch_size) {
                let b = self.net.dgd_batch(data, rows, latents.rows(rows), None)?;
                add_rows(&mut acc, rows, &b.z_grad, d);
            }
            latents.adam.step(&cfg.latent_adam, &mut latents.values, &acc);
            on_step();
        }
        Ok(latents)
    }
}

/// Per-gene NB with the mean of the cell's (cell type, compound) group in training, and one
/// dispersion per gene by the method of moments pooled within groups.
pub struct GroupMeanNb {
    pub groups: HashMap<(String, String), usize>,
    /// [group][gene] mean count.
    pub means: Vec<Vec<f64>>,
    pub r: Vec<f64>,
}

fn group_keys(cells: &Cells) -> Result<Vec<(String, String)>> {
    let ct = obs_column(&cells.obs, "cell_type").ok_or_else(|| Error::data("obs has no cell_type column"))?;
    let sm = obs_column(&cells.obs, "sm_name").ok_or_else(|| Error::data("obs has no sm_name column"))?;
    Ok((0..cells.len()).map(|i| (ct.get(i).to_string(), sm.get(i).to_string())).collect())
}

impl GroupMeanNb {
    /// Group means are shrunk towards the gene's overall mean with a weight of one cell, so a
    /// gene never seen in a small group keeps a non-zero mean.
    pub fn fit(train: &Cells) -> Result<Self> {
        let g = train.counts.n_genes();
        let keys = group_keys(train)?;
        let mut groups: HashMap<(String, String), usize> = HashMap::new();
        let mut member = Vec::with_capacity(keys.len());
        for k in keys {
            let next = groups.len();
            member.push(*groups.entry(k).or_insert(next));
        }
        let ng = groups.len();
        let (mut sum, mut sumsq, mut n) = (vec![vec![0f64; g]; ng], vec![vec![0f64; g]; ng], vec![0f64; ng]);
        for (i, &grp) in member.iter().enumerate() {
            n[grp] += 1.0;
            let (idx, data) = train.counts.row(i);
            for (&j, &k) in idx.iter().zip(data) {
                sum[grp][j as usize] += k as f64;
                sumsq[grp][j as usize] += (k as f64) * (k as f64);
            }
        }
        let total: f64 = n.iter().sum();
        let overall: Vec<f64> = (0..g).map(|j| sum.iter().map(|s| s[j]).sum::<f64>() / total.max(1.0)).collect();
        let means: Vec<Vec<f64>> = (0..ng).map(|grp| (0..g).map(|j| ((sum[grp][j] + overall[j]) / (n[grp] + 1.0)).max(1e-8)).collect()).collect();
        // Pooled within-group moments: Σ (var − mean) and Σ mean² over groups, weighted by size.
        let r = (0..g)
            .map(|j| {
                let (mut excess, mut msq) = (0f64, 0f64);
                for grp in 0..ng {
                    if n[grp] < 2.0 {
                        continue;
                    }
                    let mean = sum[grp][j] / n[grp];
                    let var = (sumsq[grp][j] - n[grp] * mean * mean) / (n[grp] - 1.0);
                    excess += n[grp] * (var - mean);
                    msq += n[grp] * mean * mean;
                }
                if excess > 0.0 { (msq / excess).clamp(1e-3, 1e6) } else { 1e6 }
            })
            .collect();
        Ok(Self { groups, means, r })
    }

    pub fn loglik(&self, cells: &Cells, path: &Path) -> Result<Vec<f64>> {
        let keys = group_keys(cells)?;
        let g = cells.counts.n_genes();
        // Zero-count part per group: Σ_j r_j log(r_j/(r_j+m_gj)), then correct the non-zeros.
        let zero: Vec<f64> = self.means.iter().map(|m| (0..g).map(|j| nb_log_likelihood(0.0, m[j], self.r[j])).sum()).collect();
        keys.par_iter()
            .enumerate()
            .map(|(i, key)| {
                let grp = *self.groups.get(key).ok_or_else(|| {
                    Error::invalid(path, format!("cell {} is in group ({}, {}) which has no training cells", cells.obs.obs_id[i], key.0, key.1))
                })?;
                let m = &self.means[grp];
                let (idx, data) = cells.counts.row(i);
                let mut ll = zero[grp];
                for (&j, &k) in idx.iter().zip(data) {
                    let j = j as usize;
                    ll += nb_log_likelihood(k as f64, m[j], self.r[j]) - nb_log_likelihood(0.0, m[j], self.r[j]);
                }
                Ok(ll)
            })
            .collect()
    }
}

/// One row of the log-likelihood table.
#[derive(Debug, Clone, PartialEq)]
pub struct LoglikRow {
    /// The model (dgd / nbvae) or `baseline_group_mean`.
    pub name: String,
    /// `all` or one cell type.
    pub cell_type: String,
    pub cells: usize,
    pub genes: usize,
    pub mean_per_cell: f64,
    pub total: f64,
}

/// `pgen-score --loglik`: a model's and the baseline's log-likelihood of held-out cells.
pub struct LoglikRun {
    pub model: std::path::PathBuf,
    pub counts: std::path::PathBuf,
    pub obs: std::path::PathBuf,
    /// Only these obs_ids of `counts`.
    pub cells: Option<std::path::PathBuf>,
    /// Training cells for the baseline (the scored cells are left out of it).
    pub baseline: Option<(std::path::PathBuf, std::path::PathBuf)>,
    pub fit_steps: usize,
    pub device: String,
}

fn rows_by_cell_type(name: &str, cells: &Cells, ll: &[f64]) -> Vec<LoglikRow> {
    let g = cells.counts.n_genes();
    let row = |cell_type: &str, values: Vec<f64>| {
        let total: f64 = values.iter().sum();
        LoglikRow { name: name.into(), cell_type: cell_type.into(), cells: values.len(), genes: g, mean_per_cell: total / values.len().max(1) as f64, total }
    };
    let mut out = vec![row("all", ll.to_vec())];
    let mut types: Vec<&str> = cells.obs.cell_type.iter().collect();
    types.sort();
    types.dedup();
    for t in types {
        out.push(row(t, (0..cells.len()).filter(|&i| cells.obs.cell_type.get(i) == t).map(|i| ll[i]).collect()));
    }
    out
}

impl LoglikRun {
    pub fn run(&self) -> Result<Vec<LoglikRow>> {
        let device = super::device(&self.device)?;
        let model = LoadedModel::load(&self.model, &device)?;
        let all_cells = Cells::read(&self.counts, &self.obs)?;
        // The baseline usually trains on the same file the scored cells come from (minus them):
        // read it once.
        let same_file = self.baseline.as_ref().is_some_and(|(c, o)| (c, o) == (&self.counts, &self.obs));
        let (cells, rest) = match &self.cells {
            Some(ids) => {
                let split = super::data::split_validation(all_cells, ids)?;
                (split.val, Some(split.train))
            }
            None => (all_cells, None),
        };
        let scored: std::collections::HashSet<String> = cells.obs.obs_id.iter().cloned().collect();
        let name = model.meta.config.model.name();
        let data = model.data(cells, &self.counts, &self.obs)?;
        let steps = if model.meta.config.model == ModelKind::Dgd { self.fit_steps as u64 } else { 1 };
        let bar = perturbgen::progress::bar(steps, "latent fit steps");
        let ll = model.loglik(&data, self.fit_steps, &|| bar.inc(1))?;
        bar.finish_and_clear();
        let mut rows = rows_by_cell_type(name, &data.cells, &ll);
        if let Some((counts, obs)) = &self.baseline {
            let train = match rest {
                Some(rest) if same_file => rest,
                _ => {
                    let train = Cells::read(counts, obs)?;
                    let keep: Vec<usize> = (0..train.len()).filter(|&i| !scored.contains(&train.obs.obs_id[i])).collect();
                    train.take(&keep)
                }
            };
            data.cells.check_same_genes(&train, counts)?;
            let baseline = GroupMeanNb::fit(&train)?;
            let ll = baseline.loglik(&data.cells, &self.obs)?;
            rows.extend(rows_by_cell_type("baseline_group_mean", &data.cells, &ll));
        }
        Ok(rows)
    }
}

pub fn write_loglik(path: &Path, rows: &[LoglikRow]) -> Result<()> {
    Ok(perturbgen::atomic::write_atomic(path, |w| {
        let mut out = csv::Writer::from_writer(w);
        out.write_record(["name", "cell_type", "cells", "genes", "mean_loglik_per_cell", "total_loglik"])?;
        for r in rows {
            out.write_record([r.name.as_str(), &r.cell_type, &r.cells.to_string(), &r.genes.to_string(), &format!("{:?}", r.mean_per_cell), &format!("{:?}", r.total)])?;
        }
        out.flush()?;
        Ok(())
    })?)
}

/// Bars of the mean negative log-likelihood per cell (lower is better), all cells.
pub fn plot_loglik(path: &Path, rows: &[LoglikRow], title: &str) -> Result<()> {
    let bars: Vec<(String, f64)> = rows.iter().filter(|r| r.cell_type == "all").map(|r| (r.name.clone(), -r.mean_per_cell)).collect();
    Ok(perturbgen::plot::draw_png(path, (900, 120 + 60 * bars.len() as u32), |root| {
        perturbgen::plot::bar_panel(root, &format!("{title}: held-out cells"), "mean NB negative log-likelihood per cell (lower is better)", &bars)
    })?)
}
