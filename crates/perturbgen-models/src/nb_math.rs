//! The negative-binomial math of the NB op: dispersion and link, log NB and digamma, the per-count terms and the dense k = 0 row.
use crate::fast_math::DenseFloat;
use num_traits::Float;
use std::mem::MaybeUninit;

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
    pub(crate) fn dr_dtheta(self, r: f64) -> f64 {
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

/// For a count k > 0 and dispersion r: (lgamma(k + r) − lgamma(r) − lgamma(k + 1),
/// ψ(k + r) − ψ(r) when `with_grad`, else 0). Most counts are small integers: for k ≤ 8 both
/// are finite sums (Γ(k + r)/Γ(r) = Π_{i<k} (r + i), ψ(k + r) − ψ(r) = Σ_{i<k} 1/(r + i)), one
/// ln instead of two lgamma and two digamma calls, and without lgamma's cancellation at large r.
#[inline]
pub(crate) fn count_terms(k: f64, r: f64, lgamma_r: f64, digamma_r: Option<f64>, with_grad: bool) -> (f64, f64) {
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
pub(crate) fn link_parts_f64(link: Link, x: f64) -> (f64, f64, f64) {
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
pub(crate) fn zero_count_nll<T: DenseFloat>(link: Link, x: T, r: T, scale: T) -> T {
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

/// log(1 + e^x) without overflow.
fn softplus(x: f64) -> f64 {
    if x > 30.0 {
        x
    } else {
        x.exp().ln_1p()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The finite sums for small integer counts against lgamma/digamma (statrs-checked in
    /// tests/nb_loss.rs), and the fallback for other counts.
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
}
