//! Everything that defines a model run (architecture, likelihood, optimisation, seeds); stored
//! with every checkpoint so that scoring and resuming use exactly what training used.
use super::adam::AdamParams;
use super::data::Scale;
use super::gmm::GmmConfig;
use super::nb_loss::{Dispersion, Link};
use super::data::COVARIATE_COLUMNS;
use perturbgen::params::{ensure, ParamGuard};

/// How often the DGD's loss counts the mixture's own log-prior (softball on the means, Gaussian
/// on the log-precisions, Dirichlet on the weights).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MixturePriorWeight {
    /// Once per cell, as the write-up's `-gmm(z).sum()` (its GMM adds the log-prior to every
    /// cell's log-density): the prior has the weight of the data.
    PerCell,
    /// Once per epoch (spread over the batches by their share of the cells): N times weaker.
    PerEpoch,
}

/// What the NB-VAE's encoder sees of a cell's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EncoderInput {
    /// The raw counts (the write-up).
    Counts,
    /// log(1 + count).
    Log1p,
}

/// What the decoder's matrix products run in during training (`train.precision`; see
/// [`crate::bf16`]). Scoring (`pgen-loglik`, generation) always uses f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// f32 throughout (candle's matmul).
    F32,
    /// bf16 inputs, f32 accumulation, f32 weights and optimiser state (CPU: oneDNN on AMX-BF16 /
    /// AVX512-BF16, an error where the CPU or the library is missing; CUDA: candle's BF16 tensors).
    Bf16,
    /// bf16 where the CPU has the units and oneDNN loads, else f32 (f32 on a GPU).
    #[default]
    Auto,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize, schemars::JsonSchema, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Deep Generative Decoder: no encoder, one learned latent per cell, GMM prior.
    Dgd,
    /// Conditional VAE with an NB likelihood.
    Nbvae,
}

impl ModelKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Dgd => "dgd",
            Self::Nbvae => "nbvae",
        }
    }
}

/// Checked [`ModelParams`] for one model (from [`TrainSection::check`]): the only form
/// [`crate::train::Trainer`] takes. Stored in every checkpoint.
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
    /// Obs columns whose levels each add a learned per-gene term to the decoder's output
    /// logits, shared by every cell type ([`crate::network::Network::decode`]); not in the
    /// MLP's input. Empty: the write-up's decoder (everything concatenated into the MLP).
    #[serde(default)]
    pub effects: Vec<String>,
    /// Two obs columns (e.g. cell_type and sm_name) whose interaction adds a rank-`interaction_rank`
    /// per-gene term to the logits ([`crate::network::Network::decode`]); empty: none.
    #[serde(default)]
    pub interaction: Vec<String>,
    /// Rank of the interaction term.
    #[serde(default = "default_interaction_rank")]
    pub interaction_rank: usize,
    /// L2 penalty on the interaction's factors and loadings, per cell of loss.
    #[serde(default = "default_interaction_penalty")]
    pub interaction_penalty: f64,
    pub scale: Scale,
    /// NB mean m = M · link(decoder output).
    pub link: Link,
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
    /// DGD: the mixture's log-prior counted once per cell or once per epoch.
    pub mixture_prior_weight: MixturePriorWeight,
    /// VAE: raw counts or log1p into the encoder.
    pub encoder_input: EncoderInput,
    /// VAE: KL weight ramps linearly to 1 over this many epochs ([`crate::train::kl_weight`]).
    pub kl_warmup: usize,
    /// Write the resume checkpoint every this many epochs (and at the end).
    pub checkpoint_every: usize,
}

fn default_interaction_rank() -> usize {
    4
}

fn default_interaction_penalty() -> f64 {
    1e-2
}

impl TrainConfig {
    /// The write-up's settings (SPEC §4) for `model`: what every unset [`ModelParams`] key takes.
    fn defaults(model: ModelKind) -> Self {
        let adam = |lr: f64, beta1: f64, beta2: f64| AdamParams { lr, beta1, beta2, eps: 1e-8 };
        Self {
            model,
            latent_dim: 5,
            decoder_hidden: vec![256, 1024],
            encoder_hidden: vec![1024, 256],
            covariates: vec!["cell_type".into(), "plate_name".into(), "well".into()],
            effects: Vec::new(),
            interaction: Vec::new(),
            interaction_rank: default_interaction_rank(),
            interaction_penalty: default_interaction_penalty(),
            scale: Scale::Max,
            link: Scale::Max.default_link(),
            dispersion: Dispersion::Exp,
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
            mixture_prior_weight: MixturePriorWeight::PerCell,
            encoder_input: EncoderInput::Counts,
            kl_warmup: 50,
            checkpoint_every: 5,
        }
    }

}

/// One model's settings (`train.common`, `train.dgd`, `train.nbvae` in the workflow config). A
/// key left out (or null) takes the model's own value in `train.<model>`, else `train.common`'s,
/// else the write-up's setting (SPEC §4), given in brackets as DGD / NB-VAE where they differ.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct ModelParams {
    /// Latent dimensions [5].
    pub latent_dim: Option<usize>,
    /// Decoder hidden layer sizes, input side first [256, 1024].
    pub decoder_hidden: Option<Vec<usize>>,
    /// NB-VAE encoder hidden layer sizes, input side first [1024, 256].
    pub encoder_hidden: Option<Vec<usize>>,
    /// Obs columns one-hot encoded into the conditioning vector [cell_type, plate_name, well].
    pub covariates: Option<Vec<String>>,
    /// Obs columns whose levels each add a learned per-gene term to the decoder's output
    /// logits, the same in every cell type (e.g. [sm_name]: a compound's effect carried to a
    /// cell type never seen treated with it); a column here is not also a covariate [[]].
    pub effects: Option<Vec<String>>,
    /// Two obs columns whose interaction adds a penalised low-rank per-gene term to the logits:
    /// [cell_type, sm_name] lets a cell type's response to a compound differ from the shared
    /// effect as far as the other pairs support it (factors per level, their elementwise product
    /// times gene loadings: a cell type never treated with the compound gets the product of
    /// what its own other compounds and the compound's other cell types taught) [[]].
    pub interaction: Option<Vec<String>>,
    /// Rank of the interaction term, ≥ 1 [4].
    pub interaction_rank: Option<usize>,
    /// L2 penalty λ on the interaction's factors and loadings: λ·(‖F‖² + ‖W‖²) is added to
    /// every cell's loss, ≥ 0 [0.01].
    pub interaction_penalty: Option<f64>,
    /// M of the NB mean M·link(decoder): the cell's max, sum or mean count [max].
    pub scale: Option<Scale>,
    /// The NB mean's link, m = M·sigmoid(x) or M·softplus(x) [sigmoid with scale max, softplus
    /// with sum or mean, as the write-up's code].
    pub link: Option<Link>,
    /// r = exp(θ) or exp(θ) + 1 [exp].
    pub dispersion: Option<Dispersion>,
    /// Initial r of every gene, > 0 (> 1 with exp_plus_one) [2].
    pub dispersion_init: Option<f64>,
    /// Cells per mini-batch [8192].
    pub batch_size: Option<usize>,
    /// Epochs at most [250].
    pub max_epochs: Option<usize>,
    /// Early stopping is not considered before this epoch; ≤ max_epochs [100].
    pub min_epochs: Option<usize>,
    /// Stop after this many epochs without a better validation loss [30].
    pub patience: Option<usize>,
    /// Seed of initialisation, latents and batch order [0].
    pub seed: Option<u64>,
    /// Adam learning rate of the decoder, dispersions (and VAE encoder) [2e-3 / 1e-3].
    pub decoder_lr: Option<f64>,
    /// Adam (beta1, beta2) of the decoder [0.5, 0.7 / 0.9, 0.999].
    pub decoder_betas: Option<[f64; 2]>,
    /// DGD latents' Adam learning rate: one step per epoch from the epoch's accumulated
    /// gradients [1e-2].
    pub latent_lr: Option<f64>,
    /// DGD latents' Adam (beta1, beta2) [0.5, 0.7].
    pub latent_betas: Option<[f64; 2]>,
    /// DGD mixture parameters' Adam learning rate [1e-1].
    pub mixture_lr: Option<f64>,
    /// DGD mixture parameters' Adam (beta1, beta2) [0.5, 0.7].
    pub mixture_betas: Option<[f64; 2]>,
    /// DGD Gaussian-mixture prior components (diagonal) [1].
    pub components: Option<usize>,
    /// DGD softball prior on the mixture means: radius, > 0 [1].
    pub softball_radius: Option<f64>,
    /// DGD softball prior: sharpness of its logistic edge, > 0 [5].
    pub softball_sharpness: Option<f64>,
    /// DGD component standard deviation at initialisation, also the centre of the
    /// log-precision prior, > 0 [0.05].
    pub sd_init: Option<f64>,
    /// DGD standard deviation of the Gaussian prior on each log-precision, > 0 [1].
    pub logprec_prior_sd: Option<f64>,
    /// DGD Dirichlet concentration on the mixture weights, > 0 (1 = flat) [1].
    pub dirichlet_alpha: Option<f64>,
    /// DGD: the mixture's own log-prior is counted once per cell (`per_cell`, the write-up's
    /// `-gmm(z).sum()`) or once per epoch (`per_epoch`) [per_cell].
    pub mixture_prior_weight: Option<MixturePriorWeight>,
    /// NB-VAE encoder input: raw `counts` or `log1p` counts [counts].
    pub encoder_input: Option<EncoderInput>,
    /// NB-VAE: epochs of the KL weight's linear ramp to 1, from 1e-5·kl_warmup (the write-up's)
    /// [50].
    pub kl_warmup: Option<usize>,
    /// Write the resume checkpoint every this many epochs (and at the end) [5].
    pub checkpoint_every: Option<usize>,
}

impl ModelParams {
    /// `self` with every unset key taken from `base`.
    pub fn or(self, base: &ModelParams) -> ModelParams {
        macro_rules! merge {
            ($($f:ident),*) => { ModelParams { $($f: self.$f.or_else(|| base.$f.clone())),* } };
        }
        merge!(
            latent_dim, decoder_hidden, encoder_hidden, covariates, effects, interaction, interaction_rank, interaction_penalty, scale, link, dispersion, dispersion_init, batch_size, max_epochs,
            min_epochs, patience, seed, decoder_lr, decoder_betas, latent_lr, latent_betas, mixture_lr, mixture_betas, components,
            softball_radius, softball_sharpness, sd_init, logprec_prior_sd, dirichlet_alpha, mixture_prior_weight, encoder_input,
            kl_warmup, checkpoint_every
        )
    }

    /// The full settings for `model`: the write-up's defaults overridden by every key set here.
    fn resolve(self, model: ModelKind) -> TrainConfig {
        let mut c = TrainConfig::defaults(model);
        macro_rules! set {
            ($($field:ident).+ = $value:expr) => {
                if let Some(v) = $value {
                    c.$($field).+ = v;
                }
            };
        }
        set!(latent_dim = self.latent_dim);
        set!(decoder_hidden = self.decoder_hidden);
        set!(encoder_hidden = self.encoder_hidden);
        set!(covariates = self.covariates);
        set!(effects = self.effects);
        set!(interaction = self.interaction);
        set!(interaction_rank = self.interaction_rank);
        set!(interaction_penalty = self.interaction_penalty);
        set!(scale = self.scale);
        c.link = self.link.unwrap_or(c.scale.default_link());
        set!(dispersion = self.dispersion);
        set!(dispersion_init = self.dispersion_init);
        set!(batch_size = self.batch_size);
        set!(max_epochs = self.max_epochs);
        set!(min_epochs = self.min_epochs);
        set!(patience = self.patience);
        set!(seed = self.seed);
        set!(decoder_adam.lr = self.decoder_lr);
        set!(latent_adam.lr = self.latent_lr);
        set!(mixture_adam.lr = self.mixture_lr);
        for (betas, adam) in [(self.decoder_betas, &mut c.decoder_adam), (self.latent_betas, &mut c.latent_adam), (self.mixture_betas, &mut c.mixture_adam)] {
            if let Some([b1, b2]) = betas {
                (adam.beta1, adam.beta2) = (b1, b2);
            }
        }
        set!(gmm.components = self.components);
        set!(gmm.softball_radius = self.softball_radius);
        set!(gmm.softball_sharpness = self.softball_sharpness);
        set!(gmm.sd_init = self.sd_init);
        set!(gmm.logprec_prior_sd = self.logprec_prior_sd);
        set!(gmm.dirichlet_alpha = self.dirichlet_alpha);
        set!(mixture_prior_weight = self.mixture_prior_weight);
        set!(encoder_input = self.encoder_input);
        set!(kl_warmup = self.kl_warmup);
        set!(checkpoint_every = self.checkpoint_every);
        c
    }

    /// Resolves and checks the settings for `model`; errors name the key as `train.<key>`.
    pub fn check(self, model: ModelKind) -> perturbgen::Result<TrainConfig> {
        let c = self.resolve(model);
        let s = "train";
        ensure(c.latent_dim >= 1, s, "latent_dim", || "must be at least 1".into())?;
        for (key, v) in [("batch_size", c.batch_size), ("max_epochs", c.max_epochs), ("checkpoint_every", c.checkpoint_every), ("patience", c.patience)] {
            ensure(v >= 1, s, key, || "must be at least 1".into())?;
        }
        ensure(c.min_epochs <= c.max_epochs, s, "min_epochs", || format!("{} is more than max_epochs {}", c.min_epochs, c.max_epochs))?;
        for (key, v) in [("decoder_hidden", &c.decoder_hidden), ("encoder_hidden", &c.encoder_hidden)] {
            ensure(!v.is_empty() && !v.contains(&0), s, key, || format!("layer sizes must be at least 1 (and at least one layer), found {v:?}"))?;
        }
        ensure(
            c.dispersion_init > 0.0 && c.dispersion_init.is_finite() && !(c.dispersion == Dispersion::ExpPlusOne && c.dispersion_init <= 1.0),
            s,
            "dispersion_init",
            || format!("{} is not reachable with this dispersion parametrisation (r > 0, or r > 1 for exp_plus_one)", c.dispersion_init),
        )?;
        for (name, a) in [("decoder", &c.decoder_adam), ("latent", &c.latent_adam), ("mixture", &c.mixture_adam)] {
            ensure(a.lr > 0.0 && a.lr.is_finite(), s, &format!("{name}_lr"), || format!("must be > 0, found {}", a.lr))?;
            ensure((0.0..1.0).contains(&a.beta1) && (0.0..1.0).contains(&a.beta2), s, &format!("{name}_betas"), || {
                format!("must be in [0, 1), found [{}, {}]", a.beta1, a.beta2)
            })?;
        }
        let g = &c.gmm;
        ensure(g.components >= 1, s, "components", || "must be at least 1".into())?;
        for (key, v) in [
            ("softball_radius", g.softball_radius),
            ("softball_sharpness", g.softball_sharpness),
            ("sd_init", g.sd_init),
            ("logprec_prior_sd", g.logprec_prior_sd),
            ("dirichlet_alpha", g.dirichlet_alpha),
        ] {
            ensure(v > 0.0 && v.is_finite(), s, key, || format!("must be > 0, found {v}"))?;
        }
        ensure(!c.covariates.is_empty(), s, "covariates", || "at least one covariate is needed to condition on".into())?;
        for name in &c.covariates {
            ensure(COVARIATE_COLUMNS.contains(&name.as_str()), s, "covariates", || {
                format!("unknown covariate `{name}` (choose from {})", COVARIATE_COLUMNS.join(", "))
            })?;
        }
        for (i, name) in c.effects.iter().enumerate() {
            ensure(COVARIATE_COLUMNS.contains(&name.as_str()), s, "effects", || {
                format!("unknown obs column `{name}` (choose from {})", COVARIATE_COLUMNS.join(", "))
            })?;
            ensure(!c.covariates.contains(name), s, "effects", || {
                format!("`{name}` is also in covariates: a column enters the decoder either one-hot into its input or as an additive effect")
            })?;
            ensure(!c.effects[..i].contains(name), s, "effects", || format!("`{name}` is given twice"))?;
        }
        if !c.interaction.is_empty() {
            ensure(c.interaction.len() == 2 && c.interaction[0] != c.interaction[1], s, "interaction", || {
                format!("expected two different obs columns (e.g. [cell_type, sm_name]), found {:?}", c.interaction)
            })?;
            for name in &c.interaction {
                ensure(COVARIATE_COLUMNS.contains(&name.as_str()), s, "interaction", || {
                    format!("unknown obs column `{name}` (choose from {})", COVARIATE_COLUMNS.join(", "))
                })?;
            }
        }
        ensure(c.interaction_rank >= 1, s, "interaction_rank", || "must be at least 1".into())?;
        ensure(c.interaction_penalty >= 0.0 && c.interaction_penalty.is_finite(), s, "interaction_penalty", || {
            format!("must be ≥ 0, found {}", c.interaction_penalty)
        })?;
        Ok(c)
    }
}

/// The generative models (`pgen-train`, `pgen-loglik`; config section `train`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TrainSection {
    /// Models to train and score; [] skips the generative models.
    pub models: Vec<ModelKind>,
    /// `cpu`, or `cuda[:N]` (needs a build with `--features cuda`).
    pub device: String,
    /// The decoder's matrix products in training: `f32`; `bf16` (bf16 inputs, f32 accumulation
    /// and weights, on the CPU's AMX-BF16 / AVX512-BF16 units through oneDNN, libdnnl2, an error
    /// where either is missing; on CUDA candle's BF16 tensors); `auto` (bf16 where the CPU has
    /// both, else f32; f32 on a GPU) [auto].
    pub precision: Precision,
    /// DGD: Adam steps fitting the scored cells' latents (model frozen) in `pgen-loglik`.
    pub loglik_fit_steps: usize,
    /// Settings shared by both models.
    pub common: ModelParams,
    /// DGD settings (over `common`).
    pub dgd: ModelParams,
    /// NB-VAE settings (over `common`).
    pub nbvae: ModelParams,
}

impl Default for TrainSection {
    fn default() -> Self {
        Self {
            models: vec![ModelKind::Dgd, ModelKind::Nbvae],
            device: "cpu".into(),
            precision: Precision::Auto,
            loglik_fit_steps: 100,
            common: ModelParams::default(),
            dgd: ModelParams::default(),
            nbvae: ModelParams::default(),
        }
    }
}

impl TrainSection {
    /// `model`'s own keys over `common`'s.
    pub fn params(&self, model: ModelKind) -> ModelParams {
        let own = match model {
            ModelKind::Dgd => &self.dgd,
            ModelKind::Nbvae => &self.nbvae,
        };
        own.clone().or(&self.common)
    }
}

/// Checked [`TrainSection`]: one [`TrainConfig`] per model (both are checked, whichever is listed).
#[derive(Debug, Clone)]
pub struct TrainPlan {
    pub models: Vec<ModelKind>,
    pub device: String,
    pub precision: Precision,
    pub loglik_fit_steps: usize,
    dgd: TrainConfig,
    nbvae: TrainConfig,
}

impl TrainPlan {
    pub fn config(&self, model: ModelKind) -> &TrainConfig {
        match model {
            ModelKind::Dgd => &self.dgd,
            ModelKind::Nbvae => &self.nbvae,
        }
    }
}

impl ParamGuard for TrainSection {
    type Checked = TrainPlan;
    const SECTION: &'static str = "train";

    fn check(self) -> perturbgen::Result<TrainPlan> {
        crate::device_kind(&self.device).map_err(|m| perturbgen::Error::param("train.device", m))?;
        ensure(self.loglik_fit_steps >= 1, Self::SECTION, "loglik_fit_steps", || "must be at least 1".into())?;
        let mut seen = Vec::new();
        for m in &self.models {
            ensure(!seen.contains(m), Self::SECTION, "models", || format!("`{}` is given twice", m.name()))?;
            seen.push(*m);
        }
        Ok(TrainPlan {
            dgd: self.params(ModelKind::Dgd).check(ModelKind::Dgd)?,
            nbvae: self.params(ModelKind::Nbvae).check(ModelKind::Nbvae)?,
            models: self.models,
            device: self.device,
            precision: self.precision,
            loglik_fit_steps: self.loglik_fit_steps,
        })
    }
}
