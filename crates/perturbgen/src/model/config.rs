//! Everything that defines a model run (architecture, likelihood, optimisation, seeds); stored
//! with every checkpoint so that scoring and resuming use exactly what training used.
use super::adam::AdamParams;
use super::data::Scale;
use super::gmm::GmmConfig;
use super::nb_loss::Dispersion;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Deep Generative Decoder: no encoder, one learned latent per cell, GMM prior.
    Dgd,
    /// Conditional VAE with an NB likelihood.
    Nbvae,
}

impl ModelKind {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "dgd" => Ok(Self::Dgd),
            "nbvae" => Ok(Self::Nbvae),
            _ => Err(Error::Config(format!("unknown model `{s}` (expected dgd or nbvae)"))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Dgd => "dgd",
            Self::Nbvae => "nbvae",
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
    pub model: ModelKind,
    pub latent_dim: usize,
    /// Decoder hidden layers, input side first (write-up: 256, 1024).
    pub decoder_hidden: Vec<usize>,
    /// VAE encoder hidden layers (write-up: 1024, 256).
    pub encoder_hidden: Vec<usize>,
    /// Obs columns one-hot encoded into the conditioning vector.
    pub covariates: Vec<String>,
    pub scale: Scale,
    pub dispersion: Dispersion,
    /// Initial r of every gene.
    pub dispersion_init: f64,
    pub batch_size: usize,
    pub max_epochs: usize,
    /// Early stopping is not considered before this epoch.
    pub min_epochs: usize,
    /// Stop after this many epochs without a better validation loss.
    pub patience: usize,
    pub seed: u64,
    /// Decoder and dispersions (DGD: 2e-3, betas 0.5/0.7; VAE: encoder too).
    pub decoder_adam: AdamParams,
    /// DGD latents: one step per epoch from the gradients accumulated over the epoch.
    pub latent_adam: AdamParams,
    /// DGD mixture parameters.
    pub mixture_adam: AdamParams,
    pub gmm: GmmConfig,
    /// VAE: KL weight ramps linearly from 0 to 1 over this many epochs.
    pub kl_warmup: usize,
    /// Write the resume checkpoint every this many epochs (and at the end).
    pub checkpoint_every: usize,
}

impl TrainConfig {
    /// The write-up's settings (SPEC §4) for `model`.
    pub fn defaults(model: ModelKind) -> Self {
        let adam = |lr: f64, beta1: f64, beta2: f64| AdamParams { lr, beta1, beta2, eps: 1e-8 };
        Self {
            model,
            latent_dim: 5,
            decoder_hidden: vec![256, 1024],
            encoder_hidden: vec![1024, 256],
            covariates: vec!["cell_type".into(), "plate_name".into(), "well".into()],
            scale: Scale::Max,
            dispersion: match model {
                ModelKind::Dgd => Dispersion::ExpPlusOne,
                ModelKind::Nbvae => Dispersion::Exp,
            },
            dispersion_init: 2.0,
            batch_size: 8192,
            max_epochs: 250,
            min_epochs: 100,
            patience: 30,
            seed: 0,
            decoder_adam: match model {
                ModelKind::Dgd => adam(2e-3, 0.5, 0.7),
                ModelKind::Nbvae => adam(1e-3, 0.9, 0.999),
            },
            latent_adam: adam(1e-2, 0.5, 0.7),
            mixture_adam: adam(1e-1, 0.5, 0.7),
            gmm: GmmConfig {
                components: 1,
                softball_radius: 1.0,
                softball_sharpness: 5.0,
                sd_init: 0.05,
                logprec_prior_sd: 1.0,
                dirichlet_alpha: 1.0,
            },
            kl_warmup: 50,
            checkpoint_every: 5,
        }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.latent_dim == 0 {
            return bad("latent_dim must be at least 1".into());
        }
        if self.batch_size == 0 || self.max_epochs == 0 || self.checkpoint_every == 0 {
            return bad("batch_size, max_epochs and checkpoint_every must be at least 1".into());
        }
        if self.decoder_hidden.contains(&0) || self.encoder_hidden.contains(&0) {
            return bad("hidden layer sizes must be at least 1".into());
        }
        if !(self.dispersion_init > 0.0) || (self.dispersion == Dispersion::ExpPlusOne && self.dispersion_init <= 1.0) {
            return bad(format!("dispersion_init {} is not reachable with this dispersion parametrisation (r > 0, or r > 1 for exp_plus_one)", self.dispersion_init));
        }
        for (name, a) in [("decoder", &self.decoder_adam), ("latent", &self.latent_adam), ("mixture", &self.mixture_adam)] {
            if !(a.lr > 0.0) || !(0.0..1.0).contains(&a.beta1) || !(0.0..1.0).contains(&a.beta2) {
                return bad(format!("{name} Adam: lr must be > 0 and betas in [0, 1)"));
            }
        }
        if self.gmm.components == 0 || !(self.gmm.sd_init > 0.0) || !(self.gmm.logprec_prior_sd > 0.0) || !(self.gmm.softball_radius > 0.0) {
            return bad("gmm: components ≥ 1, sd_init, logprec_prior_sd and softball_radius > 0".into());
        }
        if self.covariates.is_empty() {
            return bad("at least one covariate is needed to condition on".into());
        }
        Ok(())
    }
}
