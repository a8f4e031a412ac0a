//! Counterfactual generation (`generate.source: controls`): a target group's cells start from
//! the latents of its cell type's own negative-control cells (same plate where there are any,
//! else same donor, else all of them) — the DGD's fitted latents, the VAE's encoder means — and
//! are decoded with the group's covariates. Decoded with their own covariates (the target cell
//! type's control wells, `generate.reference: generated*`) the same latents give the paired
//! reference, so that the model's cell-level variation cancels in the contrast.
use super::config::ModelKind;
use super::data::ModelData;
use super::loglik::LoadedModel;
use crate::error::{Error, Result};
use perturbgen::cells::Cells;
use perturbgen::io::obs::ObsTable;
use perturbgen::io::sizes::SizeTable;
use perturbgen::pseudobulk::GroupKey;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Where generated cells' latents come from (`generate.source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Draws from the model's prior (the DGD's mixture, the VAE's N(0, I)): the write-up.
    Prior,
    /// The target cell type's own negative-control cells' latents, decoded with the target
    /// group's covariates.
    #[default]
    Controls,
    /// Chosen on the generative inner hold-out, as [`crate::generate::Emit::Auto`].
    Auto,
}

/// The control cells a group's latents are taken from: its cell type's negative-control cells
/// on its plate, else of its donor, else all of them (`scope` says which).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PoolKey {
    pub cell_type: String,
    pub scope: String,
}

/// Per size-table row, the latents its generated cells take in turn (row-major × `dim`; cell
/// k takes latent k mod len). Rows with the same [`PoolKey`] get the same latents in the same
/// order, so a target group and its cell type's control wells are decoded from the same cells.
pub struct LatentPools {
    pub dim: usize,
    pub keys: Vec<PoolKey>,
    pub latents: Vec<Vec<f32>>,
}

/// The latents of every negative-control cell (`sm_name` = `negative_control`) among the
/// model's cells `cells` (the cells it was trained and validated on; their order is free): the
/// DGD's fitted latents by obs_id, the VAE's encoder means with each cell's own covariates.
/// Returns the control cells' rows of `cells.obs` and their latents.
fn control_latents(model: &LoadedModel, cells: Cells, negative_control: &str, counts_path: &Path, obs_path: &Path) -> Result<(ObsTable, Vec<f32>)> {
    let d = model.meta.config.latent_dim;
    let rows: Vec<usize> = (0..cells.len()).filter(|&i| cells.obs.sm_name.get(i) == negative_control).collect();
    if rows.is_empty() {
        return Err(Error::invalid(obs_path, format!("no cells of the negative control `{negative_control}`: generate.source: controls starts from them")));
    }
    let cells = cells.take(&rows);
    let latents = match model.meta.config.model {
        ModelKind::Dgd => {
            let index: HashMap<&str, usize> = model.meta.train_ids.iter().chain(&model.meta.val_ids).enumerate().map(|(i, id)| (id.as_str(), i)).collect();
            let mut z = Vec::with_capacity(cells.len() * d);
            for (i, id) in cells.obs.obs_id.iter().enumerate() {
                let &k = index.get(id.as_str()).ok_or_else(|| {
                    Error::Core(perturbgen::Error::bad_value(obs_path, i as u64 + 1, "obs_id", "a cell the model was trained or validated on (its latent is in the checkpoint)", format!("`{id}`")))
                })?;
                z.extend_from_slice(&model.cell_latents[k * d..(k + 1) * d]);
            }
            z
        }
        ModelKind::Nbvae => {
            let data: ModelData = model.data(cells.clone(), counts_path, obs_path)?;
            let all: Vec<usize> = (0..data.len()).collect();
            model.net.encoder_means(&data, &all)?
        }
    };
    Ok((cells.obs, latents))
}

/// The pool of a group: its cell type's control cells on its plate, else of its donor, else all.
fn pool_rows(key: &GroupKey, obs: &ObsTable, by_cell_type: &BTreeMap<&str, Vec<usize>>) -> Option<(PoolKey, Vec<usize>)> {
    let all = by_cell_type.get(key.cell_type.as_str())?;
    let on_plate: Vec<usize> = all.iter().copied().filter(|&i| obs.plate_name.get(i) == key.plate_name).collect();
    let (scope, rows) = if !on_plate.is_empty() {
        (format!("plate {}", key.plate_name), on_plate)
    } else {
        let of_donor: Vec<usize> = all.iter().copied().filter(|&i| obs.donor_id.get(i) == key.donor_id).collect();
        if !of_donor.is_empty() {
            (format!("donor {}", key.donor_id), of_donor)
        } else {
            ("all".to_string(), all.clone())
        }
    };
    Some((PoolKey { cell_type: key.cell_type.clone(), scope }, rows))
}

/// The latent pools of every row of `sizes` (see [`LatentPools`]), each in a seeded order
/// (the pool's cells sorted by obs_id, shuffled with a stream of `seed` and the pool's key).
pub fn control_pools(model: &LoadedModel, cells: Cells, sizes: &SizeTable, negative_control: &str, seed: u64, paths: (&Path, &Path, &Path)) -> Result<LatentPools> {
    let (counts_path, obs_path, sizes_path) = paths;
    let d = model.meta.config.latent_dim;
    let (obs, z) = control_latents(model, cells, negative_control, counts_path, obs_path)?;
    let mut by_cell_type: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for i in 0..obs.len() {
        by_cell_type.entry(obs.cell_type.get(i)).or_default().push(i);
    }
    let mut cache: BTreeMap<PoolKey, Vec<f32>> = BTreeMap::new();
    let mut pools = LatentPools { dim: d, keys: Vec::new(), latents: Vec::new() };
    for (row, group) in sizes.rows.iter().enumerate() {
        let (key, mut rows) = pool_rows(&group.key, &obs, &by_cell_type).ok_or_else(|| {
            Error::Core(perturbgen::Error::bad_value(
                sizes_path,
                row as u64 + 1,
                "cell_type",
                format!("a cell type with `{negative_control}` cells among the model's cells (generate.source: controls starts from them)"),
                format!("`{}`", group.key.cell_type),
            ))
        })?;
        let latents = cache
            .entry(key.clone())
            .or_insert_with(|| {
                rows.sort_by(|&a, &b| obs.obs_id[a].cmp(&obs.obs_id[b]));
                let digest = Sha256::digest(format!("{}\u{1f}{}", key.cell_type, key.scope).as_bytes());
                let salt = u64::from_le_bytes(digest[..8].try_into().expect("a SHA-256 digest has 32 bytes"));
                rows.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ salt));
                rows.iter().flat_map(|&i| z[i * d..(i + 1) * d].iter().copied()).collect()
            })
            .clone();
        pools.keys.push(key);
        pools.latents.push(latents);
    }
    Ok(pools)
}

impl LatentPools {
    /// Latents of `n` generated cells of size-table row `row`: its pool's in turn.
    pub fn take(&self, row: usize, n: usize) -> Vec<f32> {
        let pool = &self.latents[row];
        let len = pool.len() / self.dim;
        (0..n).flat_map(|k| pool[(k % len) * self.dim..(k % len + 1) * self.dim].iter().copied()).collect()
    }
}
