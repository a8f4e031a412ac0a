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

    /// `n` draws from the mixture, row-major n × dim: a component by softmax(weight), then
    /// mean + N(0, 1) · sd with sd = exp(−logprec / 2) = 1/√precision. Deterministic given `rng`.
    pub fn sample(&self, n: usize, rng: &mut impl rand::Rng) -> candle_core::Result<Vec<f32>> {
        let to_f64 = |v: &Var| -> candle_core::Result<Vec<f64>> { v.as_tensor().to_dtype(candle_core::DType::F64)?.flatten_all()?.to_vec1::<f64>() };
        let (mean, logprec, weight) = (to_f64(&self.mean)?, to_f64(&self.logprec)?, to_f64(&self.weight)?);
        let (k, d) = (weight.len(), self.dim);
        // softmax(weight) as a cumulative distribution.
        let top = weight.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mut cdf: Vec<f64> = weight.iter().map(|w| (w - top).exp()).collect();
        let total: f64 = cdf.iter().sum();
        let mut acc = 0.0;
        for p in cdf.iter_mut() {
            acc += *p / total;
            *p = acc;
        }
        let sd: Vec<f64> = logprec.iter().map(|l| (-0.5 * l).exp()).collect();
        let mut out = Vec::with_capacity(n * d);
        for _ in 0..n {
            let u: f64 = rng.random();
            let c = if k == 1 { 0 } else { cdf.iter().position(|&p| u < p).unwrap_or(k - 1) };
            for j in 0..d {
                let e: f64 = StandardNormal.sample(rng);
                out.push((mean[c * d + j] + sd[c * d + j] * e) as f32);
            }
        }
        Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// 200k draws of a 2-component mixture in 2 dimensions against its analytic mean and
    /// variance: E = Σ w μ, Var = Σ w (σ² + μ²) − E².
    #[test]
    fn sample_matches_the_mixture_moments() {
        let config = GmmConfig { components: 2, softball_radius: 1.0, softball_sharpness: 5.0, sd_init: 0.1, logprec_prior_sd: 1.0, dirichlet_alpha: 1.0 };
        let gmm = Gmm::new(config, 2, 0, &Device::Cpu).unwrap();
        let (mu, sd, w) = ([[-1.0f64, 0.5], [2.0, -0.25]], [[0.3f64, 1.0], [0.1, 0.6]], [0.25f64, 0.75]);
        gmm.mean.set(&Tensor::new(&[[-1.0f32, 0.5], [2.0, -0.25]], &Device::Cpu).unwrap()).unwrap();
        let logprec: Vec<f32> = sd.iter().flatten().map(|s| (-2.0 * s.ln()) as f32).collect();
        gmm.logprec.set(&Tensor::from_vec(logprec, (2, 2), &Device::Cpu).unwrap()).unwrap();
        gmm.weight.set(&Tensor::new(&[0.0f32, 3f32.ln()], &Device::Cpu).unwrap()).unwrap();
        let n = 200_000;
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let draws = gmm.sample(n, &mut rng).unwrap();
        assert_eq!(draws.len(), n * 2);
        for j in 0..2 {
            let mean: f64 = (0..n).map(|i| draws[i * 2 + j] as f64).sum::<f64>() / n as f64;
            let var: f64 = (0..n).map(|i| (draws[i * 2 + j] as f64 - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
            let e: f64 = (0..2).map(|c| w[c] * mu[c][j]).sum();
            let v: f64 = (0..2).map(|c| w[c] * (sd[c][j] * sd[c][j] + mu[c][j] * mu[c][j])).sum::<f64>() - e * e;
            // Standard errors: √(v/n) for the mean, ~v·√(2/n)·(kurtosis) for the variance.
            assert!((mean - e).abs() < 5.0 * (v / n as f64).sqrt(), "dim {j}: sample mean {mean}, analytic {e}");
            assert!((var - v).abs() < 0.02 * v, "dim {j}: sample variance {var}, analytic {v}");
        }
        // The same rng state gives the same draws.
        assert_eq!(draws, gmm.sample(n, &mut ChaCha8Rng::seed_from_u64(7)).unwrap());
    }
}
