//! What a training run leaves for people to look at: history.csv, loss.png, latent.png.
use super::config::ModelKind;
use super::data::{obs_column, ModelData};
use super::plots;
use super::train::Trainer;
use perturbgen::atomic::write_atomic;
use crate::error::{Error, Result};
use std::path::Path;

/// At most this many cells in the latent plot (an even stride over the cells).
const LATENT_PLOT_CELLS: usize = 20_000;

pub fn write_history(path: &Path, trainer: &Trainer) -> Result<()> {
    Ok(write_atomic(path, |w| {
        writeln!(w, "epoch,train_recon,train_prior,val_recon,val_prior,val_loss,kl_weight,seconds,best")?;
        for l in &trainer.meta.history {
            writeln!(
                w,
                "{},{},{},{},{},{},{},{:.3},{}",
                l.epoch, l.train_recon, l.train_prior, l.val_recon, l.val_prior, l.val_loss, l.kl_weight, l.seconds,
                l.epoch == trainer.meta.best_epoch
            )?;
        }
        Ok(())
    })?)
}

/// What is rewritten after every epoch: history.csv and loss.png (each written to a temporary
/// beside it and renamed, so a reader never sees half of either).
pub fn write_progress(dir: &Path, trainer: &Trainer) -> Result<()> {
    let meta = &trainer.meta;
    write_history(&dir.join("history.csv"), trainer)?;
    plots::loss_curves(&dir.join("loss.png"), &meta.history, meta.config.model.name(), meta.best_epoch)
}

/// Latents of (a stride of) the training cells: DGD's learned ones, the VAE's encoder means.
fn latents(trainer: &Trainer, data: &ModelData, rows: &[usize]) -> Result<Vec<f32>> {
    let d = trainer.meta.config.latent_dim;
    match trainer.meta.config.model {
        ModelKind::Dgd => Ok(rows.iter().flat_map(|&r| trainer.latents_train.values[r * d..(r + 1) * d].iter().copied()).collect()),
        ModelKind::Nbvae => Ok(trainer.net.encoder_means(data, rows)?),
    }
}

pub fn write_report(dir: &Path, trainer: &Trainer, data: &ModelData) -> Result<()> {
    let meta = &trainer.meta;
    let model = meta.config.model.name();
    write_progress(dir, trainer)?;
    let stride = data.len().div_ceil(LATENT_PLOT_CELLS).max(1);
    let rows: Vec<usize> = (0..data.len()).step_by(stride).collect();
    let z = latents(trainer, data, &rows)?;
    let (points, projection) = plots::project_2d(&z, meta.config.latent_dim);
    let marks = match &trainer.net.gmm {
        Some(gmm) => projection.apply(&gmm.mean.as_tensor().to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?),
        None => Vec::new(),
    };
    let column = |name: &str| obs_column(&data.cells.obs, name).ok_or_else(|| Error::data(format!("no obs column {name}")));
    let (ct, donor, sm) = (column("cell_type")?, column("donor_id")?, column("sm_name")?);
    let cell_type: Vec<&str> = rows.iter().map(|&r| ct.get(r)).collect();
    let donors: Vec<&str> = rows.iter().map(|&r| donor.get(r)).collect();
    let compound: Vec<&str> = rows.iter().map(|&r| sm.get(r)).collect();
    let how = if meta.config.latent_dim > 2 { "PC1/PC2 of " } else { "" };
    let title = format!("{model} {how}latents, epoch {}", meta.epoch);
    plots::latent_scatter(&dir.join("latent.png"), &points, &cell_type, &donors, &compound, &marks, &title)
}
