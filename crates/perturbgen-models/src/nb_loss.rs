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
use std::mem::MaybeUninit;
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
    fn forward<T: DenseFloat>(&self, x: &[T], theta: &[T]) -> (Vec<f64>, Option<(Vec<f32>, Vec<f32>)>) {
        // One copy of the loops per link, so that the dense loop has no branch on it.
        match self.link {
            Link::Sigmoid => self.forward_link::<T, false>(x, theta),
            Link::Softplus => self.forward_link::<T, true>(x, theta),
        }
    }

    #[allow(clippy::type_complexity)]
    fn forward_link<T: DenseFloat, const SOFTPLUS: bool>(&self, x: &[T], theta: &[T]) -> (Vec<f64>, Option<(Vec<f32>, Vec<f32>)>) {
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
        // Filled through their spare capacity by the dense pass (no memset of B × G floats).
        let mut grads: Option<(Vec<f32>, Vec<f32>)> = self.with_grad.then(|| (Vec::with_capacity(n * g), Vec::with_capacity(n * g)));
        let row = |c: usize, out: &mut f64, scratch: &mut Vec<T>, gx: Option<RowGrads<'_>>| {
            let xs = &x[c * g..(c + 1) * g];
            let scale = b.scale[c] as f64;
            let scale_t: T = from_f64(scale);
            let log_scale = scale.ln();
            // k = 0 for every gene ([`DenseFloat::dense_row`]), vectorised.
            scratch.resize(g, T::zero());
            let dense = DenseRow { x: xs, r: &r_t, dr: &dr_t, scale: scale_t, nll: scratch };
            let (mut total, mut gx) = match gx {
                None => (T::dense_row::<SOFTPLUS>(dense, None), None),
                Some((gxs, gts)) => {
                    let total = T::dense_row::<SOFTPLUS>(dense, Some((&mut *gxs, &mut *gts)));
                    // SAFETY: dense_row wrote every element of both rows.
                    (total, Some(unsafe { (assume_init(gxs), assume_init(gts)) }))
                }
            };
            // Entries with k > 0: take back the dense term (recomputed bit for bit: the same
            // element function) and add the whole −log NB in f64, so that its large terms cancel
            // in f64 whatever T is; the gradients are overwritten with their f64 values.
            for e in b.indptr[c]..b.indptr[c + 1] {
                let j = b.indices[e] as usize;
                let k = b.data[e] as f64;
                let xj = to_f64(xs[j]);
                let (link_x, log_link_x, dlogm) = link_parts_f64(link, xj);
                let (rj, m) = (r[j], scale * link_x);
                let rm = rj + m;
                let log_m = log_scale + log_link_x;
                let log1p_q = (m / rj).ln_1p();
                total -= to_f64(zero_count_nll(link, xs[j], r_t[j], scale_t));
                let (log_ratio, digamma_diff) = count_terms(k, rj, lgamma_r[j], digamma_r.get(j).copied(), gx.is_some());
                total += rj * log1p_q - (k * (log_m - rm.ln()) + log_ratio);
                if let Some((gxs, gts)) = gx.as_mut() {
                    // d(−ll)/dm = r(m − k)/(m(r + m)); dm/dx = m·g(x).
                    gxs[j] = ((rj * m - k * rj) / rm * dlogm) as f32;
                    gts[j] = ((log1p_q - m / rm - (digamma_diff - k / rm)) * disp.dr_dtheta(rj)) as f32;
                }
            }
            *out = total;
        };
        match grads.as_mut() {
            None => nll.par_iter_mut().enumerate().for_each_init(Vec::new, |s, (c, out)| row(c, out, s, None)),
            Some((gx, gt)) => nll
                .par_iter_mut()
                .zip(gx.spare_capacity_mut()[..n * g].par_chunks_mut(g))
                .zip(gt.spare_capacity_mut()[..n * g].par_chunks_mut(g))
                .enumerate()
                .for_each_init(Vec::new, |s, (c, ((out, gx), gt))| row(c, out, s, Some((gx, gt)))),
        }
        let grads = grads.map(|(mut gx, mut gt)| {
            // SAFETY: every row of both buffers was written above (rows cover 0..n·g).
            unsafe {
                gx.set_len(n * g);
                gt.set_len(n * g);
            }
            (gx, gt)
        });
        (nll, grads)
    }
}

/// For a count k > 0 and dispersion r: (lgamma(k + r) − lgamma(r) − lgamma(k + 1),
/// ψ(k + r) − ψ(r) when `with_grad`, else 0). Most counts are small integers: for k ≤ 8 both
/// are finite sums (Γ(k + r)/Γ(r) = Π_{i<k} (r + i), ψ(k + r) − ψ(r) = Σ_{i<k} 1/(r + i)), one
/// ln instead of two lgamma and two digamma calls, and without lgamma's cancellation at large r.
#[inline]
fn count_terms(k: f64, r: f64, lgamma_r: f64, digamma_r: Option<f64>, with_grad: bool) -> (f64, f64) {
    if k <= 8.0 && k == k.trunc() && r < 1e30 {
        let (mut rising, mut factorial, mut digamma_diff) = (1.0, 1.0, 0.0);
        for i in 0..k as usize {
            let ri = r + i as f64;
            rising *= ri;
            factorial *= (i + 1) as f64;
            if with_grad {
                digamma_diff += 1.0 / ri;
            }
        }
        return ((rising / factorial).ln(), digamma_diff);
    }
    let log_ratio = libm::lgamma(k + r) - lgamma_r - libm::lgamma(k + 1.0);
    (log_ratio, if with_grad { digamma(k + r) - digamma_r.unwrap_or_else(|| digamma(r)) } else { 0.0 })
}

/// (link(x), log link(x), g(x) = d log link / dx) in f64, without cancellation or overflow.
fn link_parts_f64(link: Link, x: f64) -> (f64, f64, f64) {
    match link {
        Link::Sigmoid => {
            // One exp for both: log sigmoid(x) = −(max(−x, 0) + log1p(e^−|x|)).
            let e = (-x.abs()).exp();
            let (big, small) = (1.0 / (1.0 + e), e / (1.0 + e));
            let (s, one_minus_s) = if x >= 0.0 { (big, small) } else { (small, big) };
            (s, -((-x).max(0.0) + e.ln_1p()), one_minus_s)
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

/// The pieces of −log NB(0; m, r) = r·log1p(m/r), m = M·link(x), in T's precision:
/// (g(x) = (dm/dx)/m, m, log1p(m/r)). Branch-free (both sides computed, then selected), so that
/// the dense loop vectorises; one function, so that recomputing it gives the same bits.
#[inline(always)]
fn zero_count_parts<T: DenseFloat>(link: Link, x: T, r: T, scale: T) -> (T, T, T) {
    let (l, dlogm) = match link {
        Link::Sigmoid => sigmoid_pair_dense(x),
        Link::Softplus => {
            let (s, _) = sigmoid_pair_dense(x);
            let sp = x.max(T::zero()) + (-x.abs()).exp_dense().log1p_dense();
            // softplus(x) and sigmoid(x) underflow together (both ≈ eˣ): g → 1.
            let ratio = s / sp;
            (sp, if sp > T::zero() { ratio } else { T::one() })
        }
    };
    let m = scale * l;
    (dlogm, m, (m / r).log1p_dense())
}

#[inline(always)]
fn zero_count_nll<T: DenseFloat>(link: Link, x: T, r: T, scale: T) -> T {
    r * zero_count_parts(link, x, r, scale).2
}

/// One cell's dense k = 0 pass: inputs per gene, and the scratch it sums from.
pub struct DenseRow<'a, T> {
    pub x: &'a [T],
    pub r: &'a [T],
    /// dr/dθ per gene.
    pub dr: &'a [T],
    pub scale: T,
    /// Scratch, one per gene: the per-gene NLL before it is summed.
    pub nll: &'a mut [T],
}

/// Where a training pass writes d(NLL)/dx and d(NLL)/dθ for one cell (every element written).
pub type RowGrads<'a> = (&'a mut [MaybeUninit<f32>], &'a mut [MaybeUninit<f32>]);

/// The dense row as plain element-wise code (the reference; [`DenseFloat::dense_row`] runs it
/// compiled for the CPU's vector units). Writes every element of `grads`' rows; returns
/// Σ_j r_j·log1p(m_j/r_j) in f64, summed in eight interleaved lanes (a fixed order, so the sum
/// has the same bits whatever vector width ran the loop).
#[inline(always)]
pub fn dense_row_generic<T: DenseFloat, const SOFTPLUS: bool>(row: DenseRow<'_, T>, grads: Option<RowGrads<'_>>) -> f64 {
    let link = if SOFTPLUS { Link::Softplus } else { Link::Sigmoid };
    let g = row.x.len();
    let (x, r, dr, nll) = (&row.x[..g], &row.r[..g], &row.dr[..g], &mut row.nll[..g]);
    match grads {
        None => {
            for j in 0..g {
                nll[j] = zero_count_nll(link, x[j], r[j], row.scale);
            }
        }
        Some((gx, gt)) => {
            let (gx, gt) = (&mut gx[..g], &mut gt[..g]);
            for j in 0..g {
                let rj = r[j];
                let (dlogm, m, log1p_q) = zero_count_parts(link, x[j], rj, row.scale);
                let m_rm = m / (rj + m);
                nll[j] = rj * log1p_q;
                gx[j].write((rj * m_rm * dlogm).narrow());
                gt[j].write(((log1p_q - m_rm) * dr[j]).narrow());
            }
        }
    }
    let mut lanes = [0f64; 8];
    let mut chunks = nll.chunks_exact(8);
    for c in &mut chunks {
        for (acc, &v) in lanes.iter_mut().zip(c) {
            *acc += v.widen();
        }
    }
    for (acc, &v) in lanes.iter_mut().zip(chunks.remainder()) {
        *acc += v.widen();
    }
    lanes.iter().sum()
}

/// [`dense_row_generic`] in f32, compiled once per vector ISA and picked at run time from the
/// CPU's features (the `multiversion` crate). No FMA contraction (Rust never fuses a·b + c on
/// its own) and the same operations in the same order in every version, so every CPU gets the
/// same bits from it.
#[multiversion::multiversion(targets("x86_64+avx2+fma", "x86_64+avx", "x86_64+sse4.1"))]
fn dense_row_f32<const SOFTPLUS: bool>(row: DenseRow<'_, f32>, grads: Option<RowGrads<'_>>) -> f64 {
    dense_row_generic::<f32, SOFTPLUS>(row, grads)
}

/// The element type of the NB op's dense pass: its exp and log1p, and the dense row.
pub trait DenseFloat: Float + Send + Sync {
    /// log(1 + q) for q ≥ 0.
    fn log1p_dense(self) -> Self;
    /// eˣ (for f32 on a clamped range: [`exp_f32`]).
    fn exp_dense(self) -> Self;
    fn widen(self) -> f64;
    fn narrow(self) -> f32;
    /// [`dense_row_generic`], as fast as this type allows.
    fn dense_row<const SOFTPLUS: bool>(row: DenseRow<'_, Self>, grads: Option<RowGrads<'_>>) -> f64;
}

/// f64 (evaluation and tests): std's functions, scalar.
impl DenseFloat for f64 {
    #[inline(always)]
    fn log1p_dense(self) -> f64 {
        self.ln_1p()
    }

    #[inline(always)]
    fn exp_dense(self) -> f64 {
        self.exp()
    }

    #[inline(always)]
    fn widen(self) -> f64 {
        self
    }

    #[inline(always)]
    fn narrow(self) -> f32 {
        self as f32
    }

    fn dense_row<const SOFTPLUS: bool>(row: DenseRow<'_, f64>, grads: Option<RowGrads<'_>>) -> f64 {
        dense_row_generic::<f64, SOFTPLUS>(row, grads)
    }
}

/// f32 (training): exp and log1p written out as polynomials, because a libm call per element
/// keeps the loop scalar (glibc's logf/expf/log1p were ~28 % of a bf16 DGD step at Kaggle size,
/// perf), and no stable-Rust crate offers vectorisable ones chosen at run time (std calls libm;
/// `wide` picks its SIMD at compile time, `sleef` needs nightly).
impl DenseFloat for f32 {
    #[inline(always)]
    fn log1p_dense(self) -> f32 {
        log1p_f32(self)
    }

    #[inline(always)]
    fn exp_dense(self) -> f32 {
        exp_f32(self)
    }

    #[inline(always)]
    fn widen(self) -> f64 {
        self as f64
    }

    #[inline(always)]
    fn narrow(self) -> f32 {
        self
    }

    fn dense_row<const SOFTPLUS: bool>(row: DenseRow<'_, f32>, grads: Option<RowGrads<'_>>) -> f64 {
        dense_row_f32::<SOFTPLUS>(row, grads)
    }
}

/// eˣ in f32 (Cephes' expf: x = n·ln 2 + f, |f| ≤ ln 2 / 2, e^f by a degree-6 polynomial,
/// 2ⁿ from the exponent bits): within 2 ulps for x in [−87.3, 88]; x is clamped to that range
/// (e^−87.3 ≈ 1.2e-38, the smallest normal: no subnormal results; e^88 instead of ∞).
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // 1.5·2²³: adding and subtracting it rounds to the nearest integer (ties to even) without a
    // rounding instruction the baseline ISA lacks; its bits minus the constant's are that integer.
    const ROUND: f32 = 12_582_912.0;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.336_55, 88.0);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let n_int = t.to_bits() as i32 - ROUND.to_bits() as i32;
    let f = x - n * LN2_HI - n * LN2_LO;
    let p = ((((1.987_569_1e-4 * f + 1.398_2e-3) * f + 8.333_452e-3) * f + 4.166_579_6e-2) * f + 1.666_666_5e-1) * f + 0.5;
    let e_f = p * f * f + f + 1.0;
    e_f * f32::from_bits(((n_int + 127) as u32) << 23)
}

/// ln x in f32 for normal x > 0 (Cephes' logf: x = 2ᵉ·m, m in [√½, √2), ln(1 + (m − 1)) by a
/// degree-9 polynomial): within 2 ulps. Branch-free.
#[inline(always)]
pub fn ln_f32(x: f32) -> f32 {
    const SQRT_HALF: f32 = std::f32::consts::FRAC_1_SQRT_2;
    let bits = x.to_bits();
    let e = ((bits >> 23) & 0xff) as i32 - 126;
    // The mantissa scaled to [0.5, 1).
    let m = f32::from_bits((bits & 0x807f_ffff) | 0x3f00_0000);
    let small = m < SQRT_HALF;
    let e = (e - small as i32) as f32;
    let m = if small { m + m - 1.0 } else { m - 1.0 };
    let z = m * m;
    let p = ((((((((7.037_683_6e-2 * m - 1.151_461e-1) * m + 1.167_699_9e-1) * m - 1.242_014_1e-1) * m + 1.424_932_3e-1) * m - 1.666_805_8e-1) * m + 2.000_071_5e-1) * m - 2.499_999_4e-1) * m + 3.333_333e-1) * m * z;
    let y = p + e * -2.121_944_4e-4 - 0.5 * z;
    m + y + e * 0.693_359_4
}

/// ln(1 + q) in f32 for q ≥ 0: ln(u) for u = 1 + q rounded, plus the rounding's first-order
/// correction (q − (u − 1))/u (Goldberg's log1p). Within a few ulps; exactly 0 at q = 0.
#[inline(always)]
pub fn log1p_f32(q: f32) -> f32 {
    let u = 1.0 + q;
    ln_f32(u) + (q - (u - 1.0)) / u
}

/// (sigmoid(x), 1 − sigmoid(x)) from one exp, both without cancellation, branch-free, in T's
/// own exp (the dense pass's).
#[inline(always)]
fn sigmoid_pair_dense<T: DenseFloat>(x: T) -> (T, T) {
    let e = (-x.abs()).exp_dense();
    let inv = T::one() / (T::one() + e);
    let (big, small) = (inv, e * inv);
    let pos = x >= T::zero();
    (if pos { big } else { small }, if pos { small } else { big })
}

/// (sigmoid(x), 1 − sigmoid(x)) from one exp, both without cancellation (the f64 paths).
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

/// # Safety
/// Every element of `s` must have been written.
unsafe fn assume_init(s: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: MaybeUninit<f32> has f32's layout; the caller guarantees every element is written.
    unsafe { &mut *(s as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

fn to_f64<T: Float>(v: T) -> f64 {
    v.to_f64().unwrap_or(f64::NAN)
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
        if dtype == DType::F32 {
            // Training: scale and reduce the op's own buffers in place (no B × G temporaries).
            let w = grad_res.to_vec1::<f32>()?;
            return Ok((Some(Tensor::from_vec(scale_rows(gx, &w, g), (n, g), device)?), Some(Tensor::from_vec(weighted_column_sums(&gt, &w, g), g, device)?)));
        }
        let w = grad_res.reshape((n, 1))?;
        let gx = Tensor::from_vec(gx, (n, g), device)?.to_dtype(dtype)?.broadcast_mul(&w)?;
        // dθ_j = Σ_b grad_res_b · d(NLL_b)/dθ_j
        let gt = w.t()?.matmul(&Tensor::from_vec(gt, (n, g), device)?.to_dtype(dtype)?)?.reshape(g)?;
        Ok((Some(gx), Some(gt)))
    }
}

/// Row b of `m` ([rows, cols]) times `w[b]`, in place.
fn scale_rows(mut m: Vec<f32>, w: &[f32], cols: usize) -> Vec<f32> {
    m.par_chunks_mut(cols).zip(w).for_each(|(row, &wb)| row.iter_mut().for_each(|v| *v *= wb));
    m
}

/// Σ_b w[b]·m[b, j] per column j of `m` ([rows, cols]), accumulated in f64 in row order
/// (columns in parallel blocks: the same bits for any thread count).
fn weighted_column_sums(m: &[f32], w: &[f32], cols: usize) -> Vec<f32> {
    const BLOCK: usize = 1024;
    let mut out = vec![0f32; cols];
    out.par_chunks_mut(BLOCK).enumerate().for_each(|(blk, o)| {
        let c0 = blk * BLOCK;
        let mut acc = vec![0f64; o.len()];
        for (row, &wb) in m.chunks(cols).zip(w) {
            let wb = wb as f64;
            acc.iter_mut().zip(&row[c0..c0 + o.len()]).for_each(|(a, &v)| *a += wb * v as f64);
        }
        o.iter_mut().zip(&acc).for_each(|(o, &a)| *o = a as f32);
    });
    out
}

/// Per-cell NLL of `logits` under the batch's counts (training: gradients tracked).
pub fn nb_nll(logits: &Tensor, theta: &Tensor, batch: Arc<SparseBatch>, dispersion: Dispersion, link: Link, with_grad: bool) -> candle_core::Result<Tensor> {
    debug_assert!(matches!(logits.dtype(), DType::F32 | DType::F64));
    NbNll::new(batch, dispersion, link, with_grad).apply(logits, theta)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The finite sums for small integer counts against lgamma/digamma (statrs-checked in
    /// tests/model.rs), and the fallback for other counts.
    #[test]
    fn count_terms_match_lgamma_and_digamma() {
        for r in [0.01, 0.7, 2.0, 13.5, 1e3, 1e8] {
            for k in [1.0, 2.0, 3.0, 5.0, 8.0, 9.0, 2.5, 120.0] {
                let (lr, dd) = count_terms(k, r, libm::lgamma(r), Some(digamma(r)), true);
                let want_lr = libm::lgamma(k + r) - libm::lgamma(r) - libm::lgamma(k + 1.0);
                let want_dd = digamma(k + r) - digamma(r);
                // lgamma's own difference loses ~|lgamma(r)|·1e-16 at large r.
                let tol = 1e-12 * (1.0 + libm::lgamma(k + r).abs());
                assert!((lr - want_lr).abs() <= tol, "k {k} r {r}: {lr} vs {want_lr}");
                assert!((dd - want_dd).abs() <= 1e-12 * (1.0 + want_dd.abs()), "k {k} r {r}: {dd} vs {want_dd}");
                assert_eq!(count_terms(k, r, libm::lgamma(r), None, false).1, 0.0);
            }
        }
    }

    #[test]
    fn weighted_column_sums_and_scaled_rows_are_hand_computed() {
        // 3 × 1030 (crosses a column block): m[b, j] = b + j/1000, w = [1, −2, 0.5].
        let cols = 1030;
        let m: Vec<f32> = (0..3).flat_map(|b| (0..cols).map(move |j| b as f32 + j as f32 / 1000.0)).collect();
        let w = [1.0f32, -2.0, 0.5];
        let sums = weighted_column_sums(&m, &w, cols);
        for j in [0, 1, 1023, 1024, 1029] {
            let want: f64 = (0..3).map(|b| w[b] as f64 * m[b * cols + j] as f64).sum();
            assert!((sums[j] as f64 - want).abs() < 1e-6, "column {j}");
        }
        let scaled = scale_rows(m.clone(), &w, cols);
        assert_eq!(scaled[cols + 7], m[cols + 7] * -2.0);
        assert_eq!(scaled[2 * cols + 1029], m[2 * cols + 1029] * 0.5);
    }
}
