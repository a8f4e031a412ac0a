//! Checkpoints: tensors (parameters, optimiser moments, latents) as safetensors, and what the
//! tensors mean (config, covariate levels, genes, cell ids, history) as JSON beside them. The
//! pair is written all-or-nothing (an `OutputSet`), and the JSON records the SHA-256 of the
//! safetensors file it describes: loading refuses a pair whose halves come from different
//! saves (a copied-over file, a pair mixed by hand or by a crash outside this library).
use super::config::TrainConfig;
use super::data::Covariates;
use perturbgen::atomic::OutputSet;
use crate::error::{Error, Result};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One epoch's numbers (losses are per cell: NB negative log-likelihood summed over genes).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub train_recon: f64,
    /// DGD: −log p(z) under the mixture; VAE: KL(q(z|x) ‖ N(0, I)) (unweighted).
    pub train_prior: f64,
    pub val_recon: f64,
    pub val_prior: f64,
    /// The early-stopping criterion: val_recon + val_prior.
    pub val_loss: f64,
    /// VAE: KL weight used this epoch (DGD: 1).
    pub kl_weight: f64,
    pub seconds: f64,
    /// What the decoder's products ran in this epoch (`f32` | `bf16`: `train.precision` as
    /// resolved on the training machine; a resumed run may differ from the epochs before it).
    /// Absent in checkpoints written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CheckpointMeta {
    pub format: String,
    pub config: TrainConfig,
    pub covariates: Covariates,
    pub genes: Vec<String>,
    /// Cells whose latents are `latent.train` / `latent.val` (DGD), in that order.
    pub train_ids: Vec<String>,
    pub val_ids: Vec<String>,
    /// Epochs completed.
    pub epoch: usize,
    pub best_epoch: usize,
    pub best_val_loss: f64,
    pub history: Vec<EpochLog>,
    /// SHA-256 (hex) of the safetensors file saved with this description.
    #[serde(default)]
    pub tensors_sha256: String,
}

/// Written by this version: adds `link`, `mixture_prior_weight` and `encoder_input` to the
/// settings, and the loss is divided by the configured batch size.
pub const FORMAT: &str = "perturbgen-model-3";

/// The previous format: still loads for scoring and generation, with the settings it implied
/// (sigmoid link whatever the scale, mixture prior once per epoch, log1p encoder input); it
/// cannot be resumed ([`crate::train::Trainer::restore`]).
pub const FORMAT_2: &str = "perturbgen-model-2";

/// A format-2 description brought to format 3's settings (the keys it lacks, as format 2 meant them).
fn upgrade_format_2(meta: &mut serde_json::Value) {
    if let Some(config) = meta.get_mut("config").and_then(|c| c.as_object_mut()) {
        for (key, value) in [("link", "sigmoid"), ("mixture_prior_weight", "per_epoch"), ("encoder_input", "log1p")] {
            config.entry(key).or_insert_with(|| value.into());
        }
    }
}

pub fn paths(dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
    (dir.join(format!("{stem}.safetensors")), dir.join(format!("{stem}.json")))
}

pub fn save(dir: &Path, stem: &str, meta: &CheckpointMeta, tensors: Vec<(String, Tensor)>) -> Result<()> {
    let (st_path, json_path) = paths(dir, stem);
    let mut set = OutputSet::new();
    let st_tmp = set.stage(&st_path)?;
    let json_tmp = set.stage(&json_path)?;
    let map: HashMap<String, Tensor> = tensors.into_iter().collect();
    // Serialised in memory and written to the set's staged file: candle's `save` (safetensors'
    // `serialize_to_file`) first writes a sibling `.tmpXXXXXX`, which a writer killed mid-save
    // leaves behind (a 272 MB one was found after a SIGTERM at Kaggle scale) under a name the
    // output set's clean-up of killed writers' files does not know.
    let bytes = safetensors::serialize(map.iter(), None).map_err(|e| Error::invalid(&st_path, format!("cannot write checkpoint: {e}")))?;
    std::fs::write(&st_tmp, &bytes).map_err(|e| Error::io(&st_path, e))?;
    let meta = CheckpointMeta { tensors_sha256: sha256_hex(&bytes), ..meta.clone() };
    let body = serde_json::to_vec(&meta).map_err(|e| Error::invalid(&json_path, e.to_string()))?;
    std::fs::write(&json_tmp, body).map_err(|e| Error::io(&json_path, e))?;
    Ok(set.commit()?)
}

/// Copies the checkpoint pair `from` to `to` in `dir` as one output set (the JSON's SHA-256 of its
/// tensors stays valid: the bytes are the same).
pub fn publish(dir: &Path, from: &str, to: &str) -> Result<()> {
    let (from_st, from_json) = paths(dir, from);
    let (to_st, to_json) = paths(dir, to);
    let mut set = OutputSet::new();
    for (src, dst) in [(&from_st, &to_st), (&from_json, &to_json)] {
        let bytes = read_input(src)?;
        let tmp = set.stage(dst)?;
        std::fs::write(&tmp, bytes).map_err(|e| Error::io(dst, e))?;
    }
    Ok(set.commit()?)
}

pub fn load(dir: &Path, stem: &str, device: &Device) -> Result<(CheckpointMeta, HashMap<String, Tensor>)> {
    let (st_path, json_path) = paths(dir, stem);
    let text = read_input(&json_path)?;
    let not_ours = |e: serde_json::Error| Error::invalid(&json_path, format!("not a perturbgen checkpoint description: {e}"));
    let mut value: serde_json::Value = serde_json::from_slice(&text).map_err(not_ours)?;
    match value.get("format").and_then(|f| f.as_str()) {
        Some(FORMAT) => {}
        Some(FORMAT_2) => upgrade_format_2(&mut value),
        other => {
            return Err(Error::invalid(
                &json_path,
                format!("checkpoint format `{}`, expected `{FORMAT}` (or `{FORMAT_2}`): written by another perturbgen version, retrain", other.unwrap_or("none")),
            ))
        }
    }
    let meta: CheckpointMeta = serde_json::from_value(value).map_err(not_ours)?;
    let bytes = read_input(&st_path)?;
    if sha256_hex(&bytes) != meta.tensors_sha256 {
        return Err(Error::invalid(
            &json_path,
            format!("does not belong to {} (written by another save: its SHA-256 differs from the one recorded here)", st_path.display()),
        ));
    }
    let tensors = candle_core::safetensors::load_buffer(&bytes, device).map_err(|e| Error::invalid(&st_path, format!("not a readable safetensors checkpoint: {e}")))?;
    Ok((meta, tensors))
}

fn read_input(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    perturbgen::atomic::open_input(path)?.read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
    Ok(bytes)
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

pub fn tensor<'a>(tensors: &'a HashMap<String, Tensor>, name: &str, path: &Path) -> Result<&'a Tensor> {
    tensors.get(name).ok_or_else(|| Error::invalid(path, format!("checkpoint lacks tensor `{name}`")))
}
