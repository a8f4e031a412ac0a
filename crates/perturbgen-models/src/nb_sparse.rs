//! The NB op's k > 0 entries of one cell: the dense pass has counted every gene as k = 0; for each
//! non-zero count this takes that term back (recomputed bit for bit: the same element function)
//! and adds the whole −log NB in f64, so that its large terms cancel in f64 whatever the logits'
//! type, and overwrites the entry's gradients with their f64 values.
//!
//! In training (f32 logits) the entries' transcendental functions (an exp, two ln, two log1p
//! per entry, and the f32 k = 0 term) were ~11 % of a bf16 DGD step at Kaggle size as scalar
//! libm calls (perf, docs/benchmarks.md): here they run over the cell's entries gathered into
//! arrays, in a loop compiled per vector ISA with the series of [`crate::fast_math`], and only
//! the summation and the scatter stay entry by entry (in the reference's order). Counts above 8
//! or not integers take the scalar lgamma/digamma path of [`count_terms`], as before.
use crate::fast_math::{exp_f64, ln_f64, log1p_f64, DenseFloat};
use crate::nb_math::{count_terms, link_parts_f64, zero_count_nll, Dispersion, Link};

/// One cell's non-zero counts and the per-gene values their terms need.
pub struct SparseRow<'a, T> {
    /// The genes of the cell's non-zero counts, and the counts.
    pub genes: &'a [u32],
    pub counts: &'a [f32],
    /// The cell's logits (with its effect rows added), all genes.
    pub x: &'a [T],
    /// r per gene in f64 and in T (the dense pass's).
    pub r: &'a [f64],
    pub r_t: &'a [T],
    pub lgamma_r: &'a [f64],
    /// ψ(r) per gene; empty without gradients.
    pub digamma_r: &'a [f64],
    /// The cell's M, in f64 and in T.
    pub scale: f64,
    pub scale_t: T,
    pub link: Link,
    pub dispersion: Dispersion,
}

/// Where the entries' gradients go: d(NLL)/dx and d(NLL)/dθ rows of the cell (all genes).
pub type SparseGrads<'a> = Option<(&'a mut [f32], &'a mut [f32])>;

/// The reference, entry by entry with std's functions (f64 logits: evaluation and tests).
/// Returns `total` with every entry's correction added in entry order.
pub fn sparse_row_generic<T: DenseFloat>(row: &SparseRow<'_, T>, mut total: f64, mut grads: SparseGrads<'_>) -> f64 {
    let log_scale = row.scale.ln();
    for (&j, &k) in row.genes.iter().zip(row.counts) {
        let (j, k) = (j as usize, k as f64);
        let xj = row.x[j].widen();
        let (link_x, log_link_x, dlogm) = link_parts_f64(row.link, xj);
        let (rj, m) = (row.r[j], row.scale * link_x);
        let rm = rj + m;
        let log_m = log_scale + log_link_x;
        let log1p_q = (m / rj).ln_1p();
        total -= zero_count_nll(row.link, row.x[j], row.r_t[j], row.scale_t).widen();
        let (log_ratio, digamma_diff) = count_terms(k, rj, row.lgamma_r[j], row.digamma_r.get(j).copied(), grads.is_some());
        total += rj * log1p_q - (k * (log_m - rm.ln()) + log_ratio);
        if let Some((gxs, gts)) = grads.as_mut() {
            // d(−ll)/dm = r(m − k)/(m(r + m)); dm/dx = m·g(x).
            gxs[j] = ((rj * m - k * rj) / rm * dlogm) as f32;
            gts[j] = ((log1p_q - m / rm - (digamma_diff - k / rm)) * row.dispersion.dr_dtheta(rj)) as f32;
        }
    }
    total
}

/// Per-thread arrays of [`sparse_row_f32`]: the gathered inputs and the entries' terms.
#[derive(Default)]
pub struct SparseScratch {
    x: Vec<f64>,
    x_t: Vec<f32>,
    k: Vec<f64>,
    r: Vec<f64>,
    r_t: Vec<f32>,
    terms: EntryTerms,
}

/// Each entry's pieces, one array per piece.
#[derive(Default)]
struct EntryTerms {
    /// The dense pass's k = 0 term (f32, widened).
    zero_term: Vec<f64>,
    m: Vec<f64>,
    rm: Vec<f64>,
    log_m: Vec<f64>,
    log1p_q: Vec<f64>,
    ln_rm: Vec<f64>,
    dlogm: Vec<f64>,
    /// ln(Γ(k + r)/(Γ(r)·k!)) and ψ(k + r) − ψ(r) by finite sums, valid where `small_count`.
    log_ratio: Vec<f64>,
    digamma_diff: Vec<f64>,
    small_count: Vec<bool>,
}

/// [`sparse_row_generic`] for f32 logits, with the entries' functions vectorised (module doc).
/// The same order of summation; the values within a few f64 ulps of the reference's.
pub fn sparse_row_f32(row: &SparseRow<'_, f32>, mut total: f64, mut grads: SparseGrads<'_>, s: &mut SparseScratch) -> f64 {
    let n = row.genes.len();
    // Gathered into contiguous arrays (the loop below then reads them in order).
    s.x.clear();
    s.x.extend(row.genes.iter().map(|&j| row.x[j as usize] as f64));
    s.x_t.clear();
    s.x_t.extend(row.genes.iter().map(|&j| row.x[j as usize]));
    s.r.clear();
    s.r.extend(row.genes.iter().map(|&j| row.r[j as usize]));
    s.r_t.clear();
    s.r_t.extend(row.genes.iter().map(|&j| row.r_t[j as usize]));
    s.k.clear();
    s.k.extend(row.counts.iter().map(|&k| k as f64));
    let t = &mut s.terms;
    for v in [&mut t.zero_term, &mut t.m, &mut t.rm, &mut t.log_m, &mut t.log1p_q, &mut t.ln_rm, &mut t.dlogm, &mut t.log_ratio, &mut t.digamma_diff] {
        v.resize(n, 0.0);
    }
    t.small_count.resize(n, false);
    let inputs = EntryInputs { x: &s.x, x_t: &s.x_t, k: &s.k, r: &s.r, r_t: &s.r_t, scale: row.scale, log_scale: row.scale.ln(), scale_t: row.scale_t };
    match row.link {
        Link::Sigmoid => entry_terms::<false>(&inputs, t),
        Link::Softplus => entry_terms::<true>(&inputs, t),
    }
    let with_grad = grads.is_some();
    for e in 0..n {
        let (j, k, rj) = (row.genes[e] as usize, s.k[e], s.r[e]);
        let (log_ratio, digamma_diff) = match t.small_count[e] {
            true => (t.log_ratio[e], t.digamma_diff[e]),
            false => count_terms(k, rj, row.lgamma_r[j], row.digamma_r.get(j).copied(), with_grad),
        };
        let (m, rm, log1p_q) = (t.m[e], t.rm[e], t.log1p_q[e]);
        total -= t.zero_term[e];
        total += rj * log1p_q - (k * (t.log_m[e] - t.ln_rm[e]) + log_ratio);
        if let Some((gxs, gts)) = grads.as_mut() {
            gxs[j] = ((rj * m - k * rj) / rm * t.dlogm[e]) as f32;
            gts[j] = ((log1p_q - m / rm - (digamma_diff - k / rm)) * row.dispersion.dr_dtheta(rj)) as f32;
        }
    }
    total
}

struct EntryInputs<'a> {
    x: &'a [f64],
    x_t: &'a [f32],
    k: &'a [f64],
    r: &'a [f64],
    r_t: &'a [f32],
    scale: f64,
    log_scale: f64,
    scale_t: f32,
}

/// The entries' pieces: simple branch-free loops (each vectorises), compiled once per vector ISA
/// and picked at run time (no FMA contraction: the same bits on every CPU).
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl+avx512bw+avx512dq+avx2+fma", "x86_64+avx2+fma", "x86_64+avx", "x86_64+sse4.1"))]
fn entry_terms<const SOFTPLUS: bool>(i: &EntryInputs<'_>, t: &mut EntryTerms) {
    let n = i.x.len();
    let (x, x_t, k, r, r_t) = (&i.x[..n], &i.x_t[..n], &i.k[..n], &i.r[..n], &i.r_t[..n]);
    let link = if SOFTPLUS { Link::Softplus } else { Link::Sigmoid };
    for ((z, &x), &r) in t.zero_term[..n].iter_mut().zip(x_t).zip(r_t) {
        *z = zero_count_nll(link, x, r, i.scale_t) as f64;
    }
    // (link(x), log link(x), g(x)) as link_parts_f64 computes them; m, log m and r + m.
    for (((m, log_m), dlogm), &x) in t.m[..n].iter_mut().zip(&mut t.log_m[..n]).zip(&mut t.dlogm[..n]).zip(x) {
        let ex = exp_f64(-x.abs());
        let (big, small) = (1.0 / (1.0 + ex), ex / (1.0 + ex));
        let (s, one_minus_s) = if x >= 0.0 { (big, small) } else { (small, big) };
        let (link_x, log_link_x, g) = if SOFTPLUS {
            let sp = if x > 30.0 { x } else { log1p_f64(exp_f64(x.min(30.0))) };
            let log_sp = if x < -30.0 { x } else { ln_f64(sp) };
            (sp, log_sp, if sp > 0.0 { s / sp } else { 1.0 })
        } else {
            (s, -((-x).max(0.0) + log1p_f64(ex)), one_minus_s)
        };
        *m = i.scale * link_x;
        *log_m = i.log_scale + log_link_x;
        *dlogm = g;
    }
    for (((rm, log1p_q), &m), &r) in t.rm[..n].iter_mut().zip(&mut t.log1p_q[..n]).zip(&t.m[..n]).zip(r) {
        *rm = r + m;
        *log1p_q = log1p_f64(m / r);
    }
    for (ln_rm, &rm) in t.ln_rm[..n].iter_mut().zip(&t.rm[..n]) {
        *ln_rm = ln_f64(rm);
    }
    // count_terms' finite sums over i < k for every k ≤ 8 at once (masked, written out): the
    // rising factorial r(r + 1)…(r + k − 1), k!, and Σ 1/(r + i) as (d/dr rising)/rising.
    for ((((log_ratio, digamma_diff), small), &k), &r) in t.log_ratio[..n].iter_mut().zip(&mut t.digamma_diff[..n]).zip(&mut t.small_count[..n]).zip(k).zip(r) {
        let (mut rising, mut d_rising, mut factorial) = (1.0, 0.0, 1.0);
        macro_rules! step {
            ($i:expr) => {
                let on = k > $i;
                let ri = r + $i;
                d_rising = if on { d_rising * ri + rising } else { d_rising };
                rising = if on { rising * ri } else { rising };
                factorial = if on { factorial * ($i + 1.0) } else { factorial };
            };
        }
        step!(0.0);
        step!(1.0);
        step!(2.0);
        step!(3.0);
        step!(4.0);
        step!(5.0);
        step!(6.0);
        step!(7.0);
        *log_ratio = ln_f64(rising / factorial);
        *digamma_diff = d_rising / rising;
        *small = k <= 8.0 && k == k.trunc() && r < 1e30;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nb_math::digamma;

    /// The vectorised entries against the reference on the same f32 inputs: counts 1–8 (finite
    /// sums), 9, 57 and 2.5 (lgamma), logits from −800 to 800, r from 0.05 to 1e6, both links
    /// and dispersions: the totals within 1e-13 relative, the gradients within 2 f32 ulps.
    #[test]
    fn vectorised_entries_match_the_reference() {
        let genes_n = 700;
        let x: Vec<f32> = (0..genes_n).map(|j| match j % 7 { 0 => -800.0 + j as f32, 1 => 800.0 - j as f32, _ => ((j * 37 % 101) as f32 - 50.0) * 0.37 }).collect();
        let r: Vec<f64> = (0..genes_n).map(|j| 0.05 * 1.02f64.powi((j % 700) as i32)).collect();
        let lgamma_r: Vec<f64> = r.iter().map(|&r| libm::lgamma(r)).collect();
        let digamma_r: Vec<f64> = r.iter().map(|&r| digamma(r)).collect();
        let r_t: Vec<f32> = r.iter().map(|&v| v as f32).collect();
        let genes: Vec<u32> = (0..genes_n as u32).filter(|j| j % 3 != 1).collect();
        let counts: Vec<f32> = genes.iter().map(|&j| [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 57.0, 2.5][j as usize % 11]).collect();
        for link in [Link::Sigmoid, Link::Softplus] {
            for dispersion in [Dispersion::Exp, Dispersion::ExpPlusOne] {
                for with_grad in [true, false] {
                    let row = SparseRow { genes: &genes, counts: &counts, x: &x, r: &r, r_t: &r_t, lgamma_r: &lgamma_r, digamma_r: if with_grad { &digamma_r } else { &[] }, scale: 60.0, scale_t: 60.0, link, dispersion };
                    let (mut gx_ref, mut gt_ref) = (vec![0f32; genes_n], vec![0f32; genes_n]);
                    let (mut gx, mut gt) = (vec![0f32; genes_n], vec![0f32; genes_n]);
                    let reference = sparse_row_generic(&row, 1234.5, with_grad.then_some((&mut gx_ref[..], &mut gt_ref[..])));
                    let fast = sparse_row_f32(&row, 1234.5, with_grad.then_some((&mut gx[..], &mut gt[..])), &mut SparseScratch::default());
                    let what = format!("{link:?} {dispersion:?} grad {with_grad}");
                    assert!(reference.is_finite() && (fast - reference).abs() <= 1e-13 * reference.abs(), "{what}: total {fast} vs {reference}");
                    for j in 0..genes_n {
                        for (a, b, name) in [(gx[j], gx_ref[j], "dx"), (gt[j], gt_ref[j], "dθ")] {
                            let ulps = (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs();
                            assert!(a == b || ulps <= 2, "{what}: {name}[{j}] {a} vs {b}");
                        }
                    }
                    if with_grad {
                        assert!(gx.iter().zip(&gt).filter(|(a, b)| **a != 0.0 && **b != 0.0).count() > genes.len() / 2, "{what}: gradients written");
                    }
                }
            }
        }
    }
}
