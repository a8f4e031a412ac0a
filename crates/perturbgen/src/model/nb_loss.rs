//! The negative-binomial log-likelihood (SPEC §4) as one fused candle op.
//!
//! candle has no lgamma/digamma op, and composing the NB log-pmf from elementwise ops costs
//! ~10 dense B×G temporaries per step. This op takes the decoder logits and the per-gene
//! log-dispersion, reads the batch's counts sparsely, and in one pass per cell computes
//! the per-cell negative log-likelihood and (when training) the gradients w.r.t. both inputs,
//! so the backward pass is a broadcast multiply. Arithmetic is in f64 whatever the tensor
//! dtype: lgamma(k + r) − lgamma(k + 1) cancels badly in f32 for large k.
//!
//! Parametrisation: mean m = M · sigmoid(x) (M = the cell's scale, e.g. its max count),
//! r = exp(θ) or exp(θ) + 1 (θ = log-dispersion parameter per gene).
//! log NB(k; m, r) = lgamma(k+r) − lgamma(r) − lgamma(k+1) + k·log(m/(r+m)) + r·log(r/(r+m)).
//! For k = 0 only the last term is non-zero, so the lgamma/digamma work is done only on the
//! non-zero counts.
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};
use rayon::prelude::*;
use std::sync::{Arc, Mutex};

/// How the per-gene parameter θ maps to the dispersion r.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dispersion {
    /// r = exp(θ) (the write-up's VAE).
    Exp,
    /// r = exp(θ) + 1 (the scDGD reference: r ≥ 1).
    ExpPlusOne,
}

impl Dispersion {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "exp" => Some(Self::Exp),
            "exp_plus_one" | "exp+1" => Some(Self::ExpPlusOne),
            _ => None,
        }
    }

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
    /// M per cell: the mean is M · sigmoid(logit).
    pub scale: Vec<f32>,
}

impl SparseBatch {
    pub fn n_cells(&self) -> usize {
        self.scale.len()
    }

    /// The counts as a dense cells × genes row-major vector (for the VAE's encoder input).
    pub fn dense_log1p(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.n_cells() * self.n_genes];
        for c in 0..self.n_cells() {
            for j in self.indptr[c]..self.indptr[c + 1] {
                out[c * self.n_genes + self.indices[j] as usize] = self.data[j].ln_1p();
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
    with_grad: bool,
    grads: Mutex<Option<(Vec<f32>, Vec<f32>)>>,
}

impl NbNll {
    pub fn new(batch: Arc<SparseBatch>, dispersion: Dispersion, with_grad: bool) -> Self {
        Self { batch, dispersion, with_grad, grads: Mutex::new(None) }
    }

    /// Per-cell NLL (tracked by autograd when the op was built `with_grad`).
    pub fn apply(self, logits: &Tensor, theta: &Tensor) -> candle_core::Result<Tensor> {
        let logits = logits.contiguous()?;
        let theta = theta.contiguous()?;
        if self.with_grad {
            logits.apply_op2(&theta, self)
        } else {
            logits.apply_op2_no_bwd(&theta, &self)
        }
    }

    fn forward<T: Copy + Send + Sync>(&self, x: &[T], theta: &[T], to64: fn(T) -> f64) -> (Vec<f64>, Option<(Vec<f32>, Vec<f32>)>) {
        let b = &*self.batch;
        let g = b.n_genes;
        let disp = self.dispersion;
        let r: Vec<f64> = theta.iter().map(|&t| disp.r(to64(t))).collect();
        let lgamma_r: Vec<f64> = r.iter().map(|&r| libm::lgamma(r)).collect();
        let digamma_r: Vec<f64> = if self.with_grad { r.iter().map(|&r| digamma(r)).collect() } else { Vec::new() };
        let n = b.n_cells();
        let mut nll = vec![0f64; n];
        let mut grads = self.with_grad.then(|| (vec![0f32; n * g], vec![0f32; n * g]));
        let row = |c: usize, out: &mut f64, gx: Option<(&mut [f32], &mut [f32])>| {
            let xs = &x[c * g..(c + 1) * g];
            let scale = b.scale[c] as f64;
            let log_scale = scale.ln();
            let (lo, hi) = (b.indptr[c], b.indptr[c + 1]);
            let mut total = 0f64;
            match gx {
                None => {
                    for j in 0..g {
                        let m = scale * sigmoid(to64(xs[j]));
                        total += r[j] * (m / r[j]).ln_1p();
                    }
                    for e in lo..hi {
                        let j = b.indices[e] as usize;
                        let k = b.data[e] as f64;
                        let xj = to64(xs[j]);
                        let m = scale * sigmoid(xj);
                        let log_m = log_scale - softplus(-xj);
                        total -= k * (log_m - (r[j] + m).ln()) + libm::lgamma(k + r[j]) - lgamma_r[j] - libm::lgamma(k + 1.0);
                    }
                }
                Some((gxs, gts)) => {
                    for j in 0..g {
                        let xj = to64(xs[j]);
                        let s = sigmoid(xj);
                        let m = scale * s;
                        let rm = r[j] + m;
                        total += r[j] * (m / r[j]).ln_1p();
                        // k = 0: d(−ll)/dx = r·m/(r+m)·(1−s); d(−ll)/dr = log1p(m/r) − m/(r+m).
                        gxs[j] = (r[j] * m / rm * (1.0 - s)) as f32;
                        gts[j] = (((m / r[j]).ln_1p() - m / rm) * disp.dr_dtheta(r[j])) as f32;
                    }
                    for e in lo..hi {
                        let j = b.indices[e] as usize;
                        let k = b.data[e] as f64;
                        let xj = to64(xs[j]);
                        let s = sigmoid(xj);
                        let m = scale * s;
                        let rm = r[j] + m;
                        let log_m = log_scale - softplus(-xj);
                        total -= k * (log_m - rm.ln()) + libm::lgamma(k + r[j]) - lgamma_r[j] - libm::lgamma(k + 1.0);
                        // The k-dependent parts: −(k − k·m/(r+m))(1−s) = −k·r/(r+m)·(1−s), and
                        // −[ψ(k+r) − ψ(r) − k/(r+m)] for r.
                        gxs[j] -= (k * r[j] / rm * (1.0 - s)) as f32;
                        gts[j] -= ((digamma(k + r[j]) - digamma_r[j] - k / rm) * disp.dr_dtheta(r[j])) as f32;
                    }
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

fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
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
                let (nll, grads) = self.forward(contiguous_slice::<f32>(s1, l1)?, contiguous_slice::<f32>(s2, l2)?, |v| v as f64);
                let out = nll.iter().map(|&v| v as f32).collect();
                (nll, grads, CpuStorage::F32(out))
            }
            (CpuStorage::F64(_), CpuStorage::F64(_)) => {
                let (nll, grads) = self.forward(contiguous_slice::<f64>(s1, l1)?, contiguous_slice::<f64>(s2, l2)?, |v| v);
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
pub fn nb_nll(logits: &Tensor, theta: &Tensor, batch: Arc<SparseBatch>, dispersion: Dispersion, with_grad: bool) -> candle_core::Result<Tensor> {
    debug_assert!(matches!(logits.dtype(), DType::F32 | DType::F64));
    NbNll::new(batch, dispersion, with_grad).apply(logits, theta)
}
