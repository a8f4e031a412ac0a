//! `acc += Σₑ values[e] · source[(indices[e] − first)·stride + c0 ..][..acc.len()]`, the e in order: the
//! inner loop of both sparse products of the NB-VAE encoder's first layer
//! ([`crate::sparse_linear`]), a sum of gathered rows into one short accumulator.
//!
//! Why by hand: written as `y += a·x` per non-zero (an axpy into the output row), each term
//! loads and stores the whole accumulator (from L2 at best, ~1.5 M × 1,024 of each a product at
//! Kaggle size). Here a [`LANES`]-wide accumulator stays in vector registers over all the terms
//! (8 zmm with AVX-512, two passes of 8 ymm with AVX), which the compiler does not do for a
//! slice or array accumulator, and the next rows are prefetched: the rows are gathered at
//! random, so the loads' latency, not the arithmetic, bounds the loop. Every lane
//! gets the same operations in the same order on every path (a multiply then an add, never
//! fused, terms in e order), so the AVX-512, AVX2 and portable paths give the same bits as
//! each other and as the axpy form.

/// The accumulator width the vector paths take; narrower ones go the portable way.
pub(crate) const LANES: usize = 128;

/// `acc[i] += values[e] * source[(indices[e] - first) * stride + c0 + i]` for each e in order,
/// each i (`source` holds rows `first..`). Panics if a gathered row lies outside `source` (a
/// caller's bug: the products check shapes).
pub(crate) fn accumulate_gathered_rows(acc: &mut [f32], values: &[f32], indices: &[u32], source: &[f32], stride: usize, c0: usize, first: u32) {
    assert_eq!(values.len(), indices.len());

    #[cfg(target_arch = "x86_64")]
    if acc.len() == LANES {
        let acc: &mut [f32; LANES] = acc.try_into().expect("length checked");
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked); the path checks each row's bounds.
            return unsafe { x86::accumulate_avx512(acc, values, indices, source, stride, c0, first) };
        }
        if std::arch::is_x86_feature_detected!("avx") {
            // SAFETY: as above, with AVX.
            return unsafe { x86::accumulate_avx(acc, values, indices, source, stride, c0, first) };
        }
    }
    accumulate_portable(acc, values, indices, source, stride, c0, first);
}

/// Where row `j`'s `width` values start in `source`: panics unless they lie within it (a
/// caller's bug; one predictable branch a term, beside its `width` loads).
#[inline(always)]
fn row_start(j: u32, first: u32, stride: usize, c0: usize, width: usize, len: usize) -> usize {
    match j.checked_sub(first).map(|r| r as usize * stride + c0) {
        Some(start) if start + width <= len => start,
        _ => panic!("gathered row {j} runs past the source (rows from {first}, {len} values)"),
    }
}

/// The reference: the same operations in the same order, the accumulator in memory.
pub(crate) fn accumulate_portable(acc: &mut [f32], values: &[f32], indices: &[u32], source: &[f32], stride: usize, c0: usize, first: u32) {
    let width = acc.len();
    for (&v, &j) in values.iter().zip(indices) {
        let row = &source[row_start(j, first, stride, c0, width, source.len())..][..width];
        for (a, &s) in acc.iter_mut().zip(row) {
            *a += v * s;
        }
    }
}

/// How many terms ahead the AVX-512 path asks for a row (prefetch): the rows are gathered at
/// random, which the hardware prefetchers cannot follow. examples/encoder_bench at Kaggle size
/// on the AMD EPYC (Zen 4): y = X·W 64 ms without, 57 / 55 / 59 ms at 4 / 8 / 16 terms ahead.
const PREFETCH_TERMS_AHEAD: usize = 8;

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{row_start, LANES, PREFETCH_TERMS_AHEAD};
    use std::arch::x86_64::*;

    /// # Safety
    /// AVX-512F present (each row's bounds are checked here).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn accumulate_avx512(acc: &mut [f32; LANES], values: &[f32], indices: &[u32], source: &[f32], stride: usize, c0: usize, first: u32) {
        const V: usize = LANES / 16;
        let mut a = [_mm512_setzero_ps(); V];
        for (i, a) in a.iter_mut().enumerate() {
            *a = unsafe { _mm512_loadu_ps(acc.as_ptr().add(16 * i)) };
        }
        for (e, (&v, &j)) in values.iter().zip(indices).enumerate() {
            if let Some(&jn) = indices.get(e + PREFETCH_TERMS_AHEAD) {
                // Only a hint, which never faults: the address need not be checked.
                let next = source.as_ptr().wrapping_add((jn.wrapping_sub(first) as usize).wrapping_mul(stride).wrapping_add(c0));
                for i in 0..V {
                    _mm_prefetch::<_MM_HINT_T0>(next.wrapping_add(16 * i) as *const i8);
                }
            }
            let row = unsafe { source.as_ptr().add(row_start(j, first, stride, c0, LANES, source.len())) };
            let v = _mm512_set1_ps(v);
            for (i, a) in a.iter_mut().enumerate() {
                *a = _mm512_add_ps(*a, _mm512_mul_ps(v, unsafe { _mm512_loadu_ps(row.add(16 * i)) }));
            }
        }
        for (i, a) in a.iter().enumerate() {
            unsafe { _mm512_storeu_ps(acc.as_mut_ptr().add(16 * i), *a) };
        }
    }

    /// # Safety
    /// AVX present (each row's bounds are checked here).
    #[target_feature(enable = "avx")]
    pub(super) unsafe fn accumulate_avx(acc: &mut [f32; LANES], values: &[f32], indices: &[u32], source: &[f32], stride: usize, c0: usize, first: u32) {
        // 16 ymm registers: the accumulator in two halves of 8, the terms gathered twice.
        const V: usize = LANES / 16;
        for half in 0..2 {
            let base = half * LANES / 2;
            let mut a = [_mm256_setzero_ps(); V];
            for (i, a) in a.iter_mut().enumerate() {
                *a = unsafe { _mm256_loadu_ps(acc.as_ptr().add(base + 8 * i)) };
            }
            for (e, (&v, &j)) in values.iter().zip(indices).enumerate() {
                if let Some(&jn) = indices.get(e + PREFETCH_TERMS_AHEAD) {
                    let next = source.as_ptr().wrapping_add((jn.wrapping_sub(first) as usize).wrapping_mul(stride).wrapping_add(c0 + base));
                    for i in 0..V / 2 {
                        _mm_prefetch::<_MM_HINT_T0>(next.wrapping_add(16 * i) as *const i8);
                    }
                }
                let row = unsafe { source.as_ptr().add(row_start(j, first, stride, c0, LANES, source.len()) + base) };
                let v = _mm256_set1_ps(v);
                for (i, a) in a.iter_mut().enumerate() {
                    *a = _mm256_add_ps(*a, _mm256_mul_ps(v, unsafe { _mm256_loadu_ps(row.add(8 * i)) }));
                }
            }
            for (i, a) in a.iter().enumerate() {
                unsafe { _mm256_storeu_ps(acc.as_mut_ptr().add(base + 8 * i), *a) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every path against the portable one, bit for bit, on values whose sums round (so an FMA
    /// or a reordering would show), accumulators that start non-zero, and rows at the source's end.
    #[test]
    fn vector_paths_give_the_portable_bits() {
        let (stride, rows) = (300usize, 40usize);
        let source: Vec<f32> = (0..stride * rows).map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 3.7).collect();
        let indices: Vec<u32> = vec![3, 39, 4, 17, 39, 5, 22];
        let values: Vec<f32> = vec![0.1, -2.5e3, 1.0 / 3.0, 7.0, 1e-4, -0.3, 12.5];
        for (c0, first) in [(0usize, 0u32), (17, 0), (stride - LANES, 0), (5, 3)] {
            let source = &source[first as usize * stride..];
            let start: Vec<f32> = (0..LANES).map(|i| i as f32 * 0.37 - 11.0).collect();
            let mut want = start.clone();
            accumulate_portable(&mut want, &values, &indices, source, stride, c0, first);
            let mut got = start.clone();
            accumulate_gathered_rows(&mut got, &values, &indices, source, stride, c0, first);
            assert_eq!(got, want, "dispatched path, c0 {c0}");
            // The portable path is the plain sum: checked by hand on one lane.
            let lane = 5;
            let hand = values.iter().zip(&indices).fold(start[lane], |a, (&v, &j)| a + v * source[(j - first) as usize * stride + c0 + lane]);
            assert_eq!(want[lane], hand);
            #[cfg(target_arch = "x86_64")]
            for (name, present, f) in [
                ("avx512", std::arch::is_x86_feature_detected!("avx512f"), x86::accumulate_avx512 as unsafe fn(&mut [f32; LANES], &[f32], &[u32], &[f32], usize, usize, u32)),
                ("avx", std::arch::is_x86_feature_detected!("avx"), x86::accumulate_avx),
            ] {
                if !present {
                    continue;
                }
                let mut got: [f32; LANES] = start.clone().try_into().unwrap();
                // SAFETY: feature checked.
                unsafe { f(&mut got, &values, &indices, source, stride, c0, first) };
                assert_eq!(got.to_vec(), want, "{name}, c0 {c0}");
            }
        }
    }

    #[test]
    #[should_panic(expected = "runs past the source")]
    fn a_row_past_the_source_panics() {
        let source = vec![0f32; LANES + 10];
        let mut acc = vec![0f32; LANES];
        accumulate_gathered_rows(&mut acc, &[1.0], &[0], &source, LANES, 11, 0);
    }

    #[test]
    #[should_panic(expected = "runs past the source")]
    fn a_row_before_the_first_panics() {
        let source = vec![0f32; 4 * LANES];
        let mut acc = vec![0f32; LANES];
        accumulate_gathered_rows(&mut acc, &[1.0, 1.0], &[2, 1], &source, LANES, 0, 2);
    }
}
