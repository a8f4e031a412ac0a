//! The f32 polynomials of the NB op's dense pass (exp, ln, log1p), the `DenseFloat` element type and the dense row compiled per vector ISA.
use crate::nb_math::{dense_row_generic, DenseRow, RowGrads};
use crate::nb_sparse::{sparse_row_f32, sparse_row_generic, SparseGrads, SparseRow, SparseScratch};
use num_traits::Float;

/// [`dense_row_generic`] in f32, compiled once per vector ISA and picked at run time from the
/// CPU's features (the `multiversion` crate). No FMA contraction (Rust never fuses a·b + c on
/// its own) and the same operations in the same order in every version, so every CPU gets the
/// same bits from it.
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl+avx512bw+avx512dq+avx2+fma", "x86_64+avx2+fma", "x86_64+avx", "x86_64+sse4.1"))]
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
    /// The cell's k > 0 entries added to `total` ([`sparse_row_generic`]), as fast as this
    /// type allows.
    fn sparse_row(row: &SparseRow<'_, Self>, total: f64, grads: SparseGrads<'_>, scratch: &mut SparseScratch) -> f64;
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

    fn sparse_row(row: &SparseRow<'_, f64>, total: f64, grads: SparseGrads<'_>, _scratch: &mut SparseScratch) -> f64 {
        sparse_row_generic(row, total, grads)
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

    fn sparse_row(row: &SparseRow<'_, f32>, total: f64, grads: SparseGrads<'_>, scratch: &mut SparseScratch) -> f64 {
        sparse_row_f32(row, total, grads, scratch)
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

// The f64 functions of the NB op's sparse k > 0 pass ([`crate::nb_sparse`]): the same reason as
// the f32 ones (a libm call per element keeps the loop scalar). Series with exact coefficients
// (1/k!, 1/(2k + 1)) rather than fitted polynomials; each within a few ulps of std's.

/// ln 2 split so that n·[`LN2_HI`] is exact for |n| < 2¹²: the high part keeps 41 significant
/// bits, the low part the rest of f64's ln 2 plus ln 2 − fl(ln 2) (2.3190468138462996e-17).
const LN2_HI: f64 = f64::from_bits(std::f64::consts::LN_2.to_bits() & !0xfff);
const LN2_LO: f64 = (std::f64::consts::LN_2 - LN2_HI) + 2.319_046_813_846_299_6e-17;

/// eˣ in f64: x = n·ln 2 + f with |f| ≤ ln 2 / 2 (Cody–Waite reduction), e^f by its Taylor
/// series to f¹³ (truncation < 1e-17 relative), 2ⁿ from the exponent bits. x is clamped to
/// [−708, 709] (normal results only: e^−708 ≈ 3.3e-308 instead of smaller or 0). Branch-free.
#[inline(always)]
pub fn exp_f64(x: f64) -> f64 {
    // 1.5·2⁵²: adding and subtracting it rounds to the nearest integer; its bits minus the
    // constant's are that integer.
    const ROUND: f64 = 6_755_399_441_055_744.0;
    let x = x.clamp(-708.0, 709.0);
    let t = x * std::f64::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let n_int = t.to_bits() as i64 - ROUND.to_bits() as i64;
    let f = (x - n * LN2_HI) - n * LN2_LO;
    // e^f = Σ f^i/i! to i = 13, in Horner's form (written out: a loop here keeps callers'
    // loops from vectorising).
    const C: [f64; 14] = [1.0, 1.0, 1.0 / 2.0, 1.0 / 6.0, 1.0 / 24.0, 1.0 / 120.0, 1.0 / 720.0, 1.0 / 5040.0, 1.0 / 40320.0, 1.0 / 362_880.0, 1.0 / 3_628_800.0, 1.0 / 39_916_800.0, 1.0 / 479_001_600.0, 1.0 / 6_227_020_800.0];
    let p = C[12] + f * C[13];
    let p = C[11] + f * p;
    let p = C[10] + f * p;
    let p = C[9] + f * p;
    let p = C[8] + f * p;
    let p = C[7] + f * p;
    let p = C[6] + f * p;
    let p = C[5] + f * p;
    let p = C[4] + f * p;
    let p = C[3] + f * p;
    let p = C[2] + f * p;
    let p = 1.0 + f * p;
    let p = 1.0 + f * p;
    p * f64::from_bits(((n_int + 1023) as u64) << 52)
}

/// ln x in f64 for x ≥ 0 (0 → −∞; subnormals scaled first): x = 2ᵉ·m with m in [√½, √2),
/// ln m = 2·atanh(s) = 2s + 2s·(s²/3 + s⁴/5 + … + s²²/23) with s = (m − 1)/(m + 1), |s| ≤ 0.172
/// (truncation < 1e-18 relative). Branch-free.
#[inline(always)]
pub fn ln_f64(x: f64) -> f64 {
    const TWO_54: f64 = 18_014_398_509_481_984.0;
    let subnormal = x < f64::MIN_POSITIVE;
    let xs = if subnormal { x * TWO_54 } else { x };
    let bits = xs.to_bits();
    let e = ((bits >> 52) & 0x7ff) as i64 - 1022 - if subnormal { 54 } else { 0 };
    // The mantissa scaled to [0.5, 1), then to [√½, √2).
    let m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3fe0_0000_0000_0000);
    let small = m < std::f64::consts::FRAC_1_SQRT_2;
    let e = (e - small as i64) as f64;
    let m = if small { m + m } else { m };
    let s = (m - 1.0) / (m + 1.0);
    let z = s * s;
    // Σ z^(i−1)/(2i + 1), i = 1…11, in Horner's form (written out, as in exp_f64).
    let p = 1.0 / 21.0 + z * (1.0 / 23.0);
    let p = 1.0 / 19.0 + z * p;
    let p = 1.0 / 17.0 + z * p;
    let p = 1.0 / 15.0 + z * p;
    let p = 1.0 / 13.0 + z * p;
    let p = 1.0 / 11.0 + z * p;
    let p = 1.0 / 9.0 + z * p;
    let p = 1.0 / 7.0 + z * p;
    let p = 1.0 / 5.0 + z * p;
    let p = 1.0 / 3.0 + z * p;
    let two_s = s + s;
    let ln_m = two_s + two_s * (z * p);
    let y = e * LN2_HI + (e * LN2_LO + ln_m);
    if x == 0.0 {
        f64::NEG_INFINITY
    } else {
        y
    }
}

/// ln(1 + q) in f64 for q > −1: ln(u) for u = 1 + q rounded, plus the rounding's first-order
/// correction (q − (u − 1))/u (Goldberg's log1p). Exactly 0 at q = 0.
#[inline(always)]
pub fn log1p_f64(q: f64) -> f64 {
    let u = 1.0 + q;
    ln_f64(u) + (q - (u - 1.0)) / u
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ulps between a and b (finite, same sign).
    fn ulps(a: f64, b: f64) -> u64 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs()
    }

    #[test]
    fn f64_exp_ln_and_log1p_are_within_a_few_ulps_of_std() {
        // A log-spaced sweep over the ranges the NB op uses, both signs for exp.
        let mut worst = (0u64, 0u64, 0u64);
        for i in 0..200_000 {
            let t = i as f64 / 200_000.0;
            for x in [t * 1400.0 - 700.0, t * 2.0 - 1.0] {
                worst.0 = worst.0.max(ulps(exp_f64(x), x.exp()));
            }
            let y = 10f64.powf(t * 600.0 - 300.0);
            worst.1 = worst.1.max(ulps(ln_f64(y), y.ln()) * (y.ln().abs() > 1e-3) as u64);
            worst.2 = worst.2.max(ulps(log1p_f64(y), y.ln_1p()));
        }
        assert!(worst.0 <= 2 && worst.1 <= 2 && worst.2 <= 3, "worst ulps (exp, ln, log1p): {worst:?}");
        // Near 1, ln's error is relative to its small value.
        for i in 1..10_000 {
            let y = 1.0 + (i as f64 - 5_000.0) * 1e-7;
            assert!((ln_f64(y) - y.ln()).abs() <= 4e-16 * y.ln().abs(), "ln {y}");
        }
        assert_eq!(exp_f64(0.0), 1.0);
        assert_eq!(ln_f64(1.0), 0.0);
        assert_eq!(log1p_f64(0.0), 0.0);
        assert_eq!(ln_f64(0.0), f64::NEG_INFINITY);
        assert!((ln_f64(5e-320) - 5e-320f64.ln()).abs() < 1e-12 * 736.0, "subnormal");
        assert!((exp_f64(-800.0) - 3.3e-308).abs() < 1e-309, "clamped at −708");
    }
}
