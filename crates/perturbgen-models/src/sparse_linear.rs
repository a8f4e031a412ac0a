//! The NB-VAE encoder's first layer on the sparse counts: y = X·W + b with X the batch's
//! [cells, genes + covariates] input in CSC form, f32 throughout, gradients to W and b only
//! (X is data).
//!
//! Why by hand: no crate we use multiplies a sparse matrix by a dense one with a backward pass
//! (candle has no sparse tensors; sprs' products are single-threaded and allocate per call).
//! Why at all: the counts are ~5–8 % non-zero, and where the CPU has no AMX tiles the dense
//! product does ~15× the arithmetic for the same result. examples/encoder_bench at Kaggle size
//! (1,024 cells × 18,211 genes → 1,024, 8 % dense) on a 2-core AMD EPYC (Zen 4, AVX512-BF16, no
//! AMX): oneDNN bf16 y = X·W 95–121 ms and dW = Xᵀ·dY 101–116 ms, these f32 kernels 78–110 and
//! 76–87 ms in the same runs, and the dense path's bf16 copies of X and W (~12 ms a step) are not
//! needed (the NB-VAE's full-scale epoch: 144 → 116–121 s, docs/benchmarks.md). On a CPU with AMX the
//! dense bf16 product wins (33 / 39 ms against 83 / 99 ms on a Xeon with AMX-BF16), hence
//! [`sparse_first_layer`].
//!
//! Every output element is summed in a fixed order (the input's columns in order for y, its
//! cells in order for dW), whatever the thread count or the vector width: the same bits on every
//! machine with the same inputs.
use crate::bf16::{f32_slice, with_cpu_f32};
use crate::handed_grads::HandedGrads;
use crate::nb_loss::SparseBatch;
use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

/// The encoder's input in compressed sparse column form: column j of X (a gene, then the
/// covariate columns) holds `values[colptr[j]..colptr[j + 1]]` in the cells `rows[…]`, cells in
/// increasing order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseColumns {
    pub n_rows: usize,
    pub colptr: Vec<usize>,
    pub rows: Vec<u32>,
    pub values: Vec<f32>,
}

impl SparseColumns {
    /// `f` of each count of `batch` (raw or log1p), then each cell's non-zero `covariates`
    /// (row-major [cells, width]) as columns genes.. genes + width: the same matrix as the dense
    /// encoder input, without its zeros.
    ///
    /// Built in blocks of columns in parallel: each block finds its part of every cell's (sorted)
    /// gene indices, counts, then fills its own range of the output. One pass over the whole
    /// batch scattering into all columns at once took ~20 ms at Kaggle size (random writes over
    /// 12 MB); a block's write cursors and output stay in cache.
    pub fn from_batch(batch: &SparseBatch, f: impl Fn(f32) -> f32 + Sync, covariates: &[f32], width: usize) -> Self {
        const BLOCKS: usize = 16;
        let (m, g) = (batch.n_cells(), batch.n_genes);
        let cols = g + width;
        let block_width = g.div_ceil(BLOCKS).max(1);
        // Block b covers genes [b·w, (b + 1)·w); the last "block" is the covariate columns.
        let bounds: Vec<(usize, usize)> = (0..BLOCKS).map(|b| ((b * block_width).min(g), ((b + 1) * block_width).min(g))).chain(std::iter::once((g, cols))).collect();
        let cell_range = |c: usize, lo: usize, hi: usize| {
            let idx = &batch.indices[batch.indptr[c]..batch.indptr[c + 1]];
            let start = idx.partition_point(|&j| (j as usize) < lo);
            let end = idx.partition_point(|&j| (j as usize) < hi);
            batch.indptr[c] + start..batch.indptr[c] + end
        };
        let covariate = |c: usize| &covariates[c * width..(c + 1) * width];
        // Counts per column, each block on its own.
        let counts: Vec<Vec<usize>> = bounds
            .par_iter()
            .enumerate()
            .map(|(b, &(lo, hi))| {
                let mut n = vec![0usize; hi - lo];
                for c in 0..m {
                    if b < BLOCKS {
                        cell_range(c, lo, hi).for_each(|e| n[batch.indices[e] as usize - lo] += 1);
                    } else {
                        covariate(c).iter().enumerate().filter(|(_, &v)| v != 0.0).for_each(|(i, _)| n[i] += 1);
                    }
                }
                n
            })
            .collect();
        let mut colptr = Vec::with_capacity(cols + 1);
        colptr.push(0usize);
        for n in counts.iter().flatten() {
            colptr.push(colptr[colptr.len() - 1] + n);
        }
        let nnz = colptr[cols];
        let (mut rows, mut values) = (vec![0u32; nnz], vec![0f32; nnz]);
        // Each block's output range, handed out as disjoint slices.
        let mut parts = Vec::with_capacity(bounds.len());
        let (mut rest_rows, mut rest_values) = (&mut rows[..], &mut values[..]);
        for &(lo, hi) in &bounds {
            let len = colptr[hi] - colptr[lo];
            let (r, rr) = std::mem::take(&mut rest_rows).split_at_mut(len);
            let (v, rv) = std::mem::take(&mut rest_values).split_at_mut(len);
            (rest_rows, rest_values) = (rr, rv);
            parts.push((lo, hi, r, v));
        }
        parts.into_par_iter().enumerate().for_each(|(b, (lo, hi, r, v))| {
            // Write cursors relative to the block's start; cells in order, so each column's
            // cells come out sorted.
            let base = colptr[lo];
            let mut next: Vec<usize> = colptr[lo..hi].iter().map(|&p| p - base).collect();
            let mut put = |j: usize, c: usize, x: f32| {
                let at = &mut next[j - lo];
                (r[*at], v[*at]) = (c as u32, x);
                *at += 1;
            };
            for c in 0..m {
                if b < BLOCKS {
                    cell_range(c, lo, hi).for_each(|e| put(batch.indices[e] as usize, c, f(batch.data[e])));
                } else {
                    covariate(c).iter().enumerate().filter(|(_, &x)| x != 0.0).for_each(|(i, &x)| put(g + i, c, x));
                }
            }
        });
        Self { n_rows: m, colptr, rows, values }
    }

    pub fn n_cols(&self) -> usize {
        self.colptr.len() - 1
    }

    /// The dense [rows, cols] row-major matrix (tests).
    pub fn to_dense(&self) -> Vec<f32> {
        let cols = self.n_cols();
        let mut out = vec![0f32; self.n_rows * cols];
        for j in 0..cols {
            for e in self.colptr[j]..self.colptr[j + 1] {
                out[self.rows[e] as usize * cols + j] = self.values[e];
            }
        }
        out
    }
}

/// Output columns per task of the forward product: each task keeps a [cells, BAND] block of y
/// (1 MiB for 1,024 cells) and reads only its band of each W row. 256 measured best of
/// 64 / 128 / 256 / one band per thread (examples/encoder_bench).
const BAND: usize = 256;

/// y += a·x, compiled per vector ISA (a multiply then an add, never fused: the same bits on
/// every CPU).
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "x86_64+avx"))]
fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    let n = y.len();
    let x = &x[..n];
    for i in 0..n {
        y[i] += a * x[i];
    }
}

/// y = X·W + b: X [m, k] sparse, W [k, n] and b [n] row-major f32.
pub fn forward(x: &SparseColumns, w: &[f32], b: &[f32]) -> Vec<f32> {
    let (m, k, n) = (x.n_rows, x.n_cols(), b.len());
    debug_assert_eq!(w.len(), k * n);
    let bands: Vec<Vec<f32>> = (0..n.div_ceil(BAND))
        .into_par_iter()
        .map(|band| {
            let (c0, width) = (band * BAND, BAND.min(n - band * BAND));
            let mut y: Vec<f32> = b[c0..c0 + width].repeat(m);
            for j in 0..k {
                let wr = &w[j * n + c0..j * n + c0 + width];
                for e in x.colptr[j]..x.colptr[j + 1] {
                    let c = x.rows[e] as usize;
                    axpy(&mut y[c * width..(c + 1) * width], x.values[e], wr);
                }
            }
            y
        })
        .collect();
    let mut y = vec![0f32; m * n];
    y.par_chunks_mut(n.max(1)).enumerate().for_each(|(c, row)| {
        for (band, block) in bands.iter().enumerate() {
            let (c0, width) = (band * BAND, BAND.min(n - band * BAND));
            row[c0..c0 + width].copy_from_slice(&block[c * width..(c + 1) * width]);
        }
    });
    y
}

/// dW = Xᵀ·dY: X [m, k] sparse, dY [m, n] row-major; dW [k, n]. Row j of dW sums the dY rows of
/// column j's cells, in cell order.
pub fn weight_grad(x: &SparseColumns, dy: &[f32], n: usize) -> Vec<f32> {
    let k = x.n_cols();
    let mut dw = vec![0f32; k * n];
    dw.par_chunks_mut(n.max(1)).enumerate().for_each(|(j, row)| {
        for e in x.colptr[j]..x.colptr[j + 1] {
            let c = x.rows[e] as usize;
            axpy(row, x.values[e], &dy[c * n..(c + 1) * n]);
        }
    });
    dw
}

/// The op on (W, b) with X held inside.
struct SparseLinear {
    x: std::sync::Arc<SparseColumns>,
    /// Some: dW goes here, not to autograd (see [`crate::handed_grads`]).
    handed: Option<HandedGrads>,
}

impl CustomOp2 for SparseLinear {
    fn name(&self) -> &'static str {
        "sparse_linear"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (w, b) = (f32_slice(s1, l1, "weight")?, f32_slice(s2, l2, "bias")?);
        let (k, n) = l1.shape().dims2()?;
        if k != self.x.n_cols() || b.len() != n {
            candle_core::bail!("sparse_linear: input of {} columns, weight {:?} and bias {:?} do not fit", self.x.n_cols(), l1.shape(), l2.shape());
        }
        Ok((CpuStorage::F32(forward(&self.x, w, b)), Shape::from((self.x.n_rows, n))))
    }

    fn bwd(&self, w: &Tensor, _b: &Tensor, _res: &Tensor, dy: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (k, n) = w.dims2()?;
        let dw = Tensor::from_vec(with_cpu_f32(dy, "output gradient", |dy| weight_grad(&self.x, dy, n))?, (k, n), w.device())?;
        let dw = match &self.handed {
            Some(handed) => {
                handed.push(w, dw)?;
                None
            }
            None => Some(dw),
        };
        Ok((dw, Some(dy.sum(0)?)))
    }
}

/// y = X·W + b (X sparse data, W [k, n] and b [n] f32 CPU variables); autograd reaches b, and W
/// too unless `handed` is given, which then receives dW.
pub fn linear_of_sparse_data(x: std::sync::Arc<SparseColumns>, weight: &Tensor, bias: &Tensor, handed: Option<HandedGrads>) -> candle_core::Result<Tensor> {
    weight.contiguous()?.apply_op2(&bias.contiguous()?, SparseLinear { x, handed })
}

/// Whether the NB-VAE encoder's first layer runs on the sparse counts ([`linear_of_sparse_data`])
/// rather than as a dense product: on the CPU, except with bf16 products on a CPU with AMX-BF16
/// tiles, where oneDNN's dense product is faster (see the module doc). Decided by the CPU's
/// features alone, so a machine always takes the same path (and gives the same bits).
pub fn sparse_first_layer(precision: crate::bf16::MatmulPrecision, device: &candle_core::Device) -> bool {
    static AMX: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    device.is_cpu() && !(precision == crate::bf16::MatmulPrecision::Bf16 && *AMX.get_or_init(|| crate::bf16::CpuBf16::detect().amx_bf16))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 3 cells × (2 genes + 2 covariates), W [4, 300] (crosses a band): the products against
    /// hand sums.
    #[test]
    fn products_match_hand_computed_sums() {
        let batch = SparseBatch { n_genes: 2, indptr: vec![0, 2, 2, 3], indices: vec![0, 1, 1], data: vec![2.0, 5.0, 1.0], scale: vec![1.0; 3] };
        let covariates = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0];
        let x = SparseColumns::from_batch(&batch, |v| v * 10.0, &covariates, 2);
        assert_eq!(x.to_dense(), vec![20.0, 50.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 10.0, 0.0, 0.0]);
        let n = 300;
        let w: Vec<f32> = (0..4 * n).map(|i| (i % 7) as f32 - 3.0).collect();
        let b: Vec<f32> = (0..n).map(|i| i as f32 / 8.0).collect();
        let y = forward(&x, &w, &b);
        let dense = x.to_dense();
        for c in 0..3 {
            for o in [0, 255, 256, 299] {
                let want: f32 = b[o] + (0..4).map(|j| dense[c * 4 + j] * w[j * n + o]).sum::<f32>();
                assert_eq!(y[c * n + o], want, "y[{c}, {o}]");
            }
        }
        let dy: Vec<f32> = (0..3 * n).map(|i| (i % 5) as f32 * 0.5).collect();
        let dw = weight_grad(&x, &dy, n);
        for j in 0..4 {
            for o in [0, 299] {
                let want: f32 = (0..3).map(|c| dense[c * 4 + j] * dy[c * n + o]).sum();
                assert_eq!(dw[j * n + o], want, "dW[{j}, {o}]");
            }
        }
    }
}
