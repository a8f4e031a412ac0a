//! The negative-binomial log-likelihood (SPEC §4) as one fused candle op.
//!
//! candle has no lgamma/digamma op, and composing the NB log-pmf from elementwise ops costs
//! ~10 dense B×G temporaries per step. This op takes the decoder logits and the per-gene
//! log-dispersion, reads the batch's counts sparsely, and in one pass per cell computes
//! the per-cell negative log-likelihood and (when training) the gradients w.r.t. both inputs,
//! so the backward pass is a broadcast multiply. Arithmetic is in f64 whatever the tensor
//! dtype: lgamma(k + r) − lgamma(k + 1) cancels badly in f32 for large k.
//!
//! Parametrisation: mean m = M · link(x) (M = the cell's scale, e.g. its max count; link =
//! sigmoid or softplus, [`Link`]), r = exp(θ) or exp(θ) + 1 (θ = log-dispersion parameter per
//! gene). The gradient in x goes through g(x) = (dm/dx)/m: 1 − sigmoid(x) for the sigmoid,
//! sigmoid(x)/softplus(x) for the softplus (→ 1 as x → −∞, no 0/0).
//! log NB(k; m, r) = lgamma(k+r) − lgamma(r) − lgamma(k+1) + k·log(m/(r+m)) + r·log(r/(r+m)).
//! For k = 0 only the last term is non-zero, so the lgamma/digamma work is done only on the
//! non-zero counts.
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};
use num_traits::Float;
use rayon::prelude::*;
use std::sync::{Arc, Mutex};

/// How the per-gene parameter θ maps to the dispersion r.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Dispersion {
    /// r = exp(θ) (the write-up's VAE).
    Exp,
    /// r = exp(θ) + 1 (the scDGD reference: r ≥ 1).
    #[serde(alias = "exp+1")]
    ExpPlusOne,
}

impl Dispersion {
    pub fn r(self, theta: f64) -> f64 {
        match self {
            Self::Exp => theta.exp(),
            Self::ExpPlusOne => theta.exp() + 1.0,
        }
    }

    /// θ giving dispersion r (the inverse of [`Dispersion::r`]).
    pub fn theta(self, r: f64) -> f64 {
        match self {
            Self::Exp => r.ln(),
            Self::ExpPlusOne => (r - 1.0).ln(),
        }
    }

    /// dr/dθ.
    fn dr_dtheta(self, r: f64) -> f64 {
        match self {
            Self::Exp => r,
            Self::ExpPlusOne => r - 1.0,
        }
    }
}

/// The link from decoder output x to the NB mean m = M · link(x).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Link {
    /// m = M · sigmoid(x): every gene's mean is capped at M (the write-up with M = max count).
    Sigmoid,
    /// m = M · softplus(x) = M · log(1 + eˣ): uncapped (the write-up's code with M = sum or
    /// mean count).
    Softplus,
}

impl Link {
    /// link(x) in f64.
    pub fn apply(self, x: f64) -> f64 {
        match self {
            Self::Sigmoid => sigmoid_pair(x).0,
            Self::Softplus => softplus(x),
        }
    }
}

/// log NB(k; m, r) for one value, in f64 (the reference the op is tested against, and what
/// the op evaluates per entry).
pub fn nb_log_likelihood(k: f64, m: f64, r: f64) -> f64 {
    // −r·log1p(m/r) = r·log(r/(r+m)), exact for m ≪ r.
    let mut ll = -r * (m / r).ln_1p();
    if k > 0.0 {
        ll += k * (m.ln() - (r + m).ln()) + libm::lgamma(k + r) - libm::lgamma(r) - libm::lgamma(k + 1.0);
    }
    ll
}

/// Digamma ψ(x) for x > 0: recurrence up to x ≥ 10, then the asymptotic series (truncation
/// error < 1e-13). Hand-written because libm (and std) have lgamma but no digamma.
pub fn digamma(mut x: f64) -> f64 {
    let mut acc = 0.0;
    while x < 10.0 {
        acc -= 1.0 / x;
        x += 1.0;
    }
    let inv = 1.0 / x;
    let inv2 = inv * inv;
    // ψ(x) ≈ ln x − 1/(2x) − Σ B_2n / (2n x^2n)
    let series = inv2 * (1.0 / 12.0 - inv2 * (1.0 / 120.0 - inv2 * (1.0 / 252.0 - inv2 * (1.0 / 240.0 - inv2 * (1.0 / 132.0)))));
    acc + x.ln() - 0.5 * inv - series
}

/// One mini-batch of counts in CSR form (row = cell, column = gene), f32 counts.
#[derive(Debug, Clone, Default)]
pub struct SparseBatch {
    pub n_genes: usize,
    pub indptr: Vec<usize>,
    pub indices: Vec<u32>,
    pub data: Vec<f32>,
    /// M per cell: the mean is M · link(logit).
    pub scale: Vec<f32>,
}

impl SparseBatch {
    pub fn n_cells(&self) -> usize {
        self.scale.len()
    }

    /// log(1 + counts) as a dense cells × genes row-major vector (a VAE encoder input).
    pub fn dense_log1p(&self) -> Vec<f32> {
        self.dense_map(f32::ln_1p)
    }

    /// The counts as a dense cells × genes row-major vector (a VAE encoder input).
    pub fn dense_counts(&self) -> Vec<f32> {
        self.dense_map(|k| k)
    }

    fn dense_map(&self, f: impl Fn(f32) -> f32) -> Vec<f32> {
        let mut out = vec![0f32; self.n_cells() * self.n_genes];
        for c in 0..self.n_cells() {
            for j in self.indptr[c]..self.indptr[c + 1] {
                out[c * self.n_genes + self.indices[j] as usize] = f(self.data[j]);
            }
        }
        out
    }
}

/// The fused NB negative log-likelihood: `logits` [B, G] and `theta` [G] → per-cell NLL [B].
/// With `with_grad` it keeps d(NLL_b)/d logit and d(NLL_b)/dθ per entry for the backward pass.
pub struct NbNll {
    batch: Arc<SparseBatch>,
    dispersion: Dispersion,
    link: Link,
    with_grad: bool,
    grads: Mutex<Option<(Vec<f32>, Vec<f32>)>>,
}

impl NbNll {
    pub fn new(batch: Arc<SparseBatch>, dispersion: Dispersion, link: Link, with_grad: bool) -> Self {
        Self { batch, dispersion, link, with_grad, grads: Mutex::new(None) }
    }

    /// Per-cell NLL (tracked by autograd when the op was built `with_grad`).
    pub fn apply(self, logits: &Tensor, theta: &Tensor) -> candle_core::Result<Tensor> {
        if !logits.device().is_cpu() {
            // The op has a CPU kernel only: on a GPU the logits make a round trip through host
            // memory (to_device is differentiable, so training still works, only slower).
            let device = logits.device().clone();
            let cpu = candle_core::Device::Cpu;
            return self.apply(&logits.to_device(&cpu)?, &theta.to_device(&cpu)?)?.to_device(&device);
        }
        let logits = logits.contiguous()?;
        let theta = theta.contiguous()?;
        if self.with_grad {
            logits.apply_op2(&theta, self)
        } else {
            logits.apply_op2_no_bwd(&theta, &self)
        }
    }

    #[allow(clippy::type_complexity)]
    fn forward<T: Log1p>(&self, x: &[T], theta: &[T]) -> (Vec<f64>, Option<(Vec<f32>, Vec<f32>)>) {
        // One copy of the loops per link, so that the dense loop has no branch on it.
        match self.link {
            Link::Sigmoid => self.forward_link::<T, false>(x, theta),
            Link::Softplus => self.forward_link::<T, true>(x, theta),
        }
    }

    #[allow(clippy::type_complexity)]
    fn forward_link<T: Log1p, const SOFTPLUS: bool>(&self, x: &[T], theta: &[T]) -> (Vec<f64>, Option<(Vec<f32>, Vec<f32>)>) {
        let b = &*self.batch;
        let g = b.n_genes;
        let disp = self.dispersion;
        let link = if SOFTPLUS { Link::Softplus } else { Link::Sigmoid };
        let r: Vec<f64> = theta.iter().map(|&t| disp.r(to_f64(t))).collect();
        // The dense (all genes) part runs in the tensors' precision — f32 in training, where it
        // is most of the op's time; the sparse k > 0 part, where lgamma(k+r) − lgamma(k+1)
        // cancels, always in f64.
        let r_t: Vec<T> = r.iter().map(|&v| from_f64(v)).collect();
        let dr_t: Vec<T> = r.iter().map(|&v| from_f64(disp.dr_dtheta(v))).collect();
        let lgamma_r: Vec<f64> = r.iter().map(|&r| libm::lgamma(r)).collect();
        let digamma_r: Vec<f64> = if self.with_grad { r.iter().map(|&r| digamma(r)).collect() } else { Vec::new() };
        let n = b.n_cells();
        let mut nll = vec![0f64; n];
        let mut grads = self.with_grad.then(|| (vec![0f32; n * g], vec![0f32; n * g]));
        let row = |c: usize, out: &mut f64, mut gx: Option<(&mut [f32], &mut [f32])>| {
            let xs = &x[c * g..(c + 1) * g];
            let scale = b.scale[c] as f64;
            let scale_t: T = from_f64(scale);
            let log_scale = scale.ln();
            let mut total = 0f64;
            // k = 0 for every gene: −ll = r·log1p(m/r); d/dx = r·m/(r+m)·g(x) (g = (dm/dx)/m);
            // d/dr = log1p(m/r) − m/(r+m).
            match gx.as_mut() {
                None => {
                    for j in 0..g {
                        total += to_f64(zero_count_nll(link, xs[j], r_t[j], scale_t));
                    }
                }
                Some((gxs, gts)) => {
                    for j in 0..g {
                        let rj = r_t[j];
                        let (dlogm, m, log1p_q) = zero_count_parts(link, xs[j], rj, scale_t);
                        let m_rm = m / (rj + m);
                        total += to_f64(rj * log1p_q);
                        gxs[j] = to_f32(rj * m_rm * dlogm);
                        gts[j] = to_f32((log1p_q - m_rm) * dr_t[j]);
                    }
                }
            }
            // Entries with k > 0: take back the dense term (recomputed bit for bit) and add the
            // whole −log NB in f64, so that its large terms cancel in f64 whatever T is; the
            // gradients are overwritten with their f64 values.
            for e in b.indptr[c]..b.indptr[c + 1] {
                let j = b.indices[e] as usize;
                let k = b.data[e] as f64;
                let xj = to_f64(xs[j]);
                let (link_x, log_link_x, dlogm) = link_parts_f64(link, xj);
                let (rj, m) = (r[j], scale * link_x);
                let rm = rj + m;
                let log_m = log_scale + log_link_x;
                total -= to_f64(zero_count_nll(link, xs[j], r_t[j], scale_t));
                total += rj * (m / rj).ln_1p() - (k * (log_m - rm.ln()) + libm::lgamma(k + rj) - lgamma_r[j] - libm::lgamma(k + 1.0));
                if let Some((gxs, gts)) = gx.as_mut() {
                    // d(−ll)/dm = r(m − k)/(m(r + m)); dm/dx = m·g(x).
                    gxs[j] = ((rj * m - k * rj) / rm * dlogm) as f32;
                    gts[j] = (((m / rj).ln_1p() - m / rm - (digamma(k + rj) - digamma_r[j] - k / rm)) * disp.dr_dtheta(rj)) as f32;
                }
            }
            *out = total;
        };
        match grads.as_mut() {
            None => nll.par_iter_mut().enumerate().for_each(|(c, out)| row(c, out, None)),
            Some((gx, gt)) => nll
                .par_iter_mut()
                .zip(gx.par_chunks_mut(g))
                .zip(gt.par_chunks_mut(g))
                .enumerate()
                .for_each(|(c, ((out, gx), gt))| row(c, out, Some((gx, gt)))),
        }
        (nll, grads)
    }
}

/// The pieces of −log NB(0; m, r) = r·log1p(m/r), m = M·link(x), in T's precision:
/// (g(x) = (dm/dx)/m, m, log1p(m/r)). One function, so that recomputing it gives the same bits.
#[inline(always)]
fn zero_count_parts<T: Log1p>(link: Link, x: T, r: T, scale: T) -> (T, T, T) {
    let (l, dlogm) = match link {
        Link::Sigmoid => sigmoid_pair(x),
        Link::Softplus => {
            let (s, _) = sigmoid_pair(x);
            let sp = x.max(T::zero()) + (-x.abs()).exp().log1p_dense();
            // softplus(x) and sigmoid(x) underflow together (both ≈ eˣ): g → 1.
            (sp, if sp > T::zero() { s / sp } else { T::one() })
        }
    };
    let m = scale * l;
    (dlogm, m, (m / r).log1p_dense())
}

#[inline(always)]
fn zero_count_nll<T: Log1p>(link: Link, x: T, r: T, scale: T) -> T {
    r * zero_count_parts(link, x, r, scale).2
}

/// (link(x), log link(x), g(x) = d log link / dx) in f64, without cancellation or overflow.
fn link_parts_f64(link: Link, x: f64) -> (f64, f64, f64) {
    match link {
        Link::Sigmoid => {
            let (s, one_minus_s) = sigmoid_pair(x);
            (s, -softplus(-x), one_minus_s)
        }
        Link::Softplus => {
            let (s, _) = sigmoid_pair(x);
            let sp = softplus(x);
            // log softplus(x) = x + log1p(−eˣ/2 + …) for x ≪ 0: within 1e-13 below −30.
            let log_sp = if x < -30.0 { x } else { sp.ln() };
            (sp, log_sp, if sp > 0.0 { s / sp } else { 1.0 })
        }
    }
}

/// log(1 + q) for q ≥ 0 in the dense loop. f64: std's. f32: hand-written because glibc's
/// log1pf alone was 12 % of a DGD training step at Kaggle size (perf); for q < 1/4 the series
/// 2·atanh(u), u = q/(2+q), to u⁹ (truncation < 1e-10 relative), else logf(1 + q), where
/// 1 + q rounds harmlessly. Both within a few ulps of the exact value.
pub trait Log1p: Float + Send + Sync {
    fn log1p_dense(self) -> Self;
}

impl Log1p for f64 {
    #[inline(always)]
    fn log1p_dense(self) -> f64 {
        self.ln_1p()
    }
}

impl Log1p for f32 {
    #[inline(always)]
    fn log1p_dense(self) -> f32 {
        if self < 0.25 {
            let u = self / (2.0 + self);
            let u2 = u * u;
            2.0 * u * (1.0 + u2 * (1.0 / 3.0 + u2 * (1.0 / 5.0 + u2 * (1.0 / 7.0 + u2 * (1.0 / 9.0)))))
        } else {
            (1.0 + self).ln()
        }
    }
}

/// (sigmoid(x), 1 − sigmoid(x)) from one exp, both without cancellation.
fn sigmoid_pair<T: Float>(x: T) -> (T, T) {
    let one = T::one();
    let e = (-x.abs()).exp();
    let (big, small) = (one / (one + e), e / (one + e));
    if x >= T::zero() {
        (big, small)
    } else {
        (small, big)
    }
}

fn to_f64<T: Float>(v: T) -> f64 {
    v.to_f64().unwrap_or(f64::NAN)
}

fn to_f32<T: Float>(v: T) -> f32 {
    v.to_f32().unwrap_or(f32::NAN)
}

fn from_f64<T: Float>(v: f64) -> T {
    T::from(v).unwrap_or_else(T::nan)
}

/// log(1 + e^x) without overflow.
fn softplus(x: f64) -> f64 {
    if x > 30.0 {
        x
    } else {
        x.exp().ln_1p()
    }
}

fn contiguous_slice<'a, T: candle_core::WithDType>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&s.as_slice::<T>()?[a..b]),
        None => candle_core::bail!("nb_nll: inputs must be contiguous"),
    }
}

impl CustomOp2 for NbNll {
    fn name(&self) -> &'static str {
        "nb_nll"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let b = &*self.batch;
        let dims = l1.shape().dims();
        if dims.len() != 2 || dims[0] != b.n_cells() || dims[1] != b.n_genes || l2.shape().elem_count() != b.n_genes {
            candle_core::bail!(
                "nb_nll: logits {:?} and theta {:?} do not match a batch of {} cells × {} genes",
                dims,
                l2.shape().dims(),
                b.n_cells(),
                b.n_genes
            );
        }
        let (nll, grads, storage) = match (s1, s2) {
            (CpuStorage::F32(_), CpuStorage::F32(_)) => {
                let (nll, grads) = self.forward(contiguous_slice::<f32>(s1, l1)?, contiguous_slice::<f32>(s2, l2)?);
                let out = nll.iter().map(|&v| v as f32).collect();
                (nll, grads, CpuStorage::F32(out))
            }
            (CpuStorage::F64(_), CpuStorage::F64(_)) => {
                let (nll, grads) = self.forward(contiguous_slice::<f64>(s1, l1)?, contiguous_slice::<f64>(s2, l2)?);
                (nll.clone(), grads, CpuStorage::F64(nll))
            }
            _ => candle_core::bail!("nb_nll: logits and theta must both be f32 or both f64"),
        };
        drop(nll);
        if let Ok(mut slot) = self.grads.lock() {
            *slot = grads;
        }
        Ok((storage, Shape::from(b.n_cells())))
    }

    fn bwd(&self, logits: &Tensor, _theta: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (gx, gt) = self
            .grads
            .lock()
            .map_err(|_| candle_core::Error::Msg("nb_nll: gradient lock poisoned".into()))?
            .take()
            .ok_or_else(|| candle_core::Error::Msg("nb_nll: backward called twice or without a forward pass".into()))?;
        let (n, g) = (self.batch.n_cells(), self.batch.n_genes);
        let dtype = logits.dtype();
        let device = logits.device();
        let w = grad_res.reshape((n, 1))?;
        let gx = Tensor::from_vec(gx, (n, g), device)?.to_dtype(dtype)?.broadcast_mul(&w)?;
        // dθ_j = Σ_b grad_res_b · d(NLL_b)/dθ_j
        let gt = w.t()?.matmul(&Tensor::from_vec(gt, (n, g), device)?.to_dtype(dtype)?)?.reshape(g)?;
        Ok((Some(gx), Some(gt)))
    }
}

/// Per-cell NLL of `logits` under the batch's counts (training: gradients tracked).
pub fn nb_nll(logits: &Tensor, theta: &Tensor, batch: Arc<SparseBatch>, dispersion: Dispersion, link: Link, with_grad: bool) -> candle_core::Result<Tensor> {
    debug_assert!(matches!(logits.dtype(), DType::F32 | DType::F64));
    NbNll::new(batch, dispersion, link, with_grad).apply(logits, theta)
}
