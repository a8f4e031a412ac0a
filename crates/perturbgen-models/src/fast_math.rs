//! The f32 polynomials of the NB op's dense pass (exp, ln, log1p), the `DenseFloat` element type and the dense row compiled per vector ISA.
use crate::nb_math::{dense_row_generic, DenseRow, RowGrads};
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
