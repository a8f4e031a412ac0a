//! The DGD's prior over latents (Schuster & Krogh 2023; SPEC §4): a Gaussian mixture with
//! diagonal covariances, whose means have a "softball" prior (almost uniform in a ball, with a
//! logistic edge), whose log-precisions have a Gaussian prior, and whose weights have a
//! Dirichlet prior.
use candle_core::{Device, Tensor, Var, D};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use std::f64::consts::PI;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GmmConfig {
    pub components: usize,
    pub softball_radius: f64,
    pub softball_sharpness: f64,
    /// Component standard deviation at initialisation; also the centre of the log-precision prior.
    pub sd_init: f64,
    /// Standard deviation of the Gaussian prior on each log-precision.
    pub logprec_prior_sd: f64,
    /// Dirichlet concentration on the weights (1 = flat).
    pub dirichlet_alpha: f64,
}

pub struct Gmm {
    pub config: GmmConfig,
    pub dim: usize,
    /// [K, D]
    pub mean: Var,
    /// [K, D] log-precision (= −2 log sd).
    pub logprec: Var,
    /// [K] unnormalised log-weights.
    pub weight: Var,
}

impl Gmm {
    /// Means drawn uniformly from the softball (seeded), log-precisions at −2 log sd_init,
    /// equal weights.
    pub fn new(config: GmmConfig, dim: usize, seed: u64, device: &Device) -> candle_core::Result<Self> {
        let k = config.components;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut means = Vec::with_capacity(k * dim);
        for _ in 0..k {
            // Uniform in the ball: a Gaussian direction times radius · U^(1/D).
            let dir: Vec<f64> = (0..dim).map(|_| StandardNormal.sample(&mut rng)).collect();
            let norm = dir.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
            let u: f64 = rand::Rng::random(&mut rng);
            let radius = config.softball_radius * u.powf(1.0 / dim as f64);
            means.extend(dir.iter().map(|v| (v / norm * radius) as f32));
        }
        let logprec = vec![(-2.0 * config.sd_init.ln()) as f32; k * dim];
        Ok(Self {
            mean: Var::from_vec(means, (k, dim), device)?,
            logprec: Var::from_vec(logprec, (k, dim), device)?,
            weight: Var::from_vec(vec![0f32; k], k, device)?,
            config,
            dim,
        })
    }

    pub fn vars(&self) -> Vec<(String, Var)> {
        vec![("gmm.mean".into(), self.mean.clone()), ("gmm.logprec".into(), self.logprec.clone()), ("gmm.weight".into(), self.weight.clone())]
    }

    /// log p(z) per row of z [B, D] → [B].
    pub fn log_prob(&self, z: &Tensor) -> candle_core::Result<Tensor> {
        let (mean, logprec) = (self.mean.as_tensor(), self.logprec.as_tensor());
        let diff = z.unsqueeze(1)?.broadcast_sub(&mean.unsqueeze(0)?)?; // [B, K, D]
        let quad = diff.sqr()?.broadcast_mul(&logprec.exp()?.unsqueeze(0)?)?.sum(D::Minus1)?; // [B, K]
        let norm = ((logprec.sum(D::Minus1)? * 0.5)? - 0.5 * self.dim as f64 * (2.0 * PI).ln())?; // [K]
        let log_w = candle_nn::ops::log_softmax(self.weight.as_tensor(), 0)?; // [K]
        let comp = (quad * -0.5)?.broadcast_add(&(norm + log_w)?.unsqueeze(0)?)?;
        log_sum_exp_rows(&comp)
    }

    /// log p of the mixture's own parameters under their priors (a scalar tensor).
    pub fn log_prior(&self) -> candle_core::Result<Tensor> {
        let c = &self.config;
        let d = self.dim as f64;
        // Softball: −log Vol(ball) − log(1 + exp(sharpness·(|μ|/radius − 1))).
        let log_volume = 0.5 * d * PI.ln() + d * c.softball_radius.ln() - libm::lgamma(1.0 + 0.5 * d);
        let norm = (self.mean.as_tensor().sqr()?.sum(D::Minus1)? + 1e-12)?.sqrt()?;
        let edge = softplus(&((norm / c.softball_radius)? - 1.0)?.affine(c.softball_sharpness, 0.0)?)?;
        let softball = ((edge * -1.0)? - log_volume)?.sum_all()?;
        // Gaussian on log-precision, centred at −2 log sd_init.
        let centre = -2.0 * c.sd_init.ln();
        let z = ((self.logprec.as_tensor() - centre)? / c.logprec_prior_sd)?;
        let n = self.logprec.elem_count() as f64;
        let gauss = ((z.sqr()?.sum_all()? * -0.5)? - n * (c.logprec_prior_sd * (2.0 * PI).sqrt()).ln())?;
        // Dirichlet(α) on the weights (the normalising constant is dropped: it has no gradient).
        let dirichlet = (candle_nn::ops::log_softmax(self.weight.as_tensor(), 0)?.sum_all()? * (c.dirichlet_alpha - 1.0))?;
        softball + gauss + dirichlet
    }
}

/// log Σ_k exp(x_bk) per row, stable.
pub fn log_sum_exp_rows(x: &Tensor) -> candle_core::Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    x.broadcast_sub(&max)?.exp()?.sum_keepdim(D::Minus1)?.log()?.add(&max)?.squeeze(D::Minus1)
}

/// log(1 + e^x), stable for large |x|: max(x, 0) + log1p(e^−|x|).
pub fn softplus(x: &Tensor) -> candle_core::Result<Tensor> {
    x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?
}
