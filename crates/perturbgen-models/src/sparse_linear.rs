//! The NB-VAE encoder's first layer on the sparse counts: y = X·W + b with X the batch's
//! [cells, genes + covariates] input held by row (for y) and by column (for dW), f32
//! throughout, gradients to W and b only (X is data).
//!
//! Why by hand: no crate we use multiplies a sparse matrix by a dense one with a backward pass
//! (candle has no sparse tensors; sprs' products are single-threaded and allocate per call).
//! Why at all: the counts are ~5–8 % non-zero, and where the CPU has no AMX tiles the dense
//! product does ~15× the arithmetic for the same result. examples/encoder_bench at Kaggle size
//! (1,024 cells × 18,211 genes → 1,024, 8 % dense) on a 2-core AMD EPYC (Zen 4, AVX512-BF16, no
//! AMX): oneDNN bf16 y = X·W 95–121 ms and dW = Xᵀ·dY 101–116 ms; the first sparse kernels (one
//! axpy per non-zero, kept as [`forward_axpy`], [`weight_grad_axpy`]) 75–110 and 68–87 ms; these
//! (each output band summed in registers over a packed, L2-sized block of rows,
//! [`crate::gathered_rows`]) 52–53 and 52–53 ms against 76–77 and 68–69 in the same runs. The
//! dense path's bf16 copies of X and W (~12 ms a step) are not needed either. On a CPU with AMX
//! the dense bf16 product wins (33 / 39 ms against the axpy forms' 83 / 99 ms on a Xeon with
//! AMX-BF16), hence [`sparse_first_layer`].
//!
//! Every output element is summed in a fixed order (the input's columns in order for y, its
//! cells in order for dW), whatever the thread count or the vector width: the same bits on every
//! machine with the same inputs.
use crate::bf16::{f32_slice, with_cpu_f32};
use crate::gathered_rows::{accumulate_gathered_rows, LANES};
use crate::handed_grads::HandedGrads;
use crate::nb_loss::SparseBatch;
use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

/// The encoder's input in compressed sparse row form: row c of X (a cell) holds
/// `values[rowptr[c]..rowptr[c + 1]]` in the columns `cols[…]` (genes, then the covariate
/// columns), in increasing order. The forward product reads it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseRows {
    pub n_cols: usize,
    pub rowptr: Vec<usize>,
    pub cols: Vec<u32>,
    pub values: Vec<f32>,
}

impl SparseRows {
    /// `f` of each count of `batch` (raw or log1p), then each cell's non-zero `covariates`
    /// (row-major [cells, width]) as columns genes.. genes + width: the same matrix as the dense
    /// encoder input, without its zeros. Cells filled in parallel blocks.
    pub fn from_batch(batch: &SparseBatch, f: impl Fn(f32) -> f32 + Sync, covariates: &[f32], width: usize) -> Self {
        const CELLS_PER_TASK: usize = 64;
        let (m, g) = (batch.n_cells(), batch.n_genes);
        let covariate = |c: usize| &covariates[c * width..(c + 1) * width];
        let mut rowptr = Vec::with_capacity(m + 1);
        rowptr.push(0usize);
        for c in 0..m {
            let len = batch.indptr[c + 1] - batch.indptr[c] + covariate(c).iter().filter(|&&x| x != 0.0).count();
            rowptr.push(rowptr[c] + len);
        }
        let nnz = rowptr[m];
        let (mut cols, mut values) = (vec![0u32; nnz], vec![0f32; nnz]);
        // Each task's cells and their output range.
        let tasks: Vec<std::ops::Range<usize>> = (0..m).step_by(CELLS_PER_TASK).map(|c0| c0..(c0 + CELLS_PER_TASK).min(m)).collect();
        let slices = split_entries(&mut cols, &mut values, tasks.iter().map(|t| rowptr[t.end] - rowptr[t.start]));
        tasks.into_par_iter().zip(slices).for_each(|(cells, (j, v))| {
            let mut at = 0;
            for c in cells {
                for e in batch.indptr[c]..batch.indptr[c + 1] {
                    (j[at], v[at]) = (batch.indices[e], f(batch.data[e]));
                    at += 1;
                }
                for (i, &x) in covariate(c).iter().enumerate().filter(|(_, &x)| x != 0.0) {
                    (j[at], v[at]) = ((g + i) as u32, x);
                    at += 1;
                }
            }
        });
        Self { n_cols: g + width, rowptr, cols, values }
    }

    pub fn n_rows(&self) -> usize {
        self.rowptr.len() - 1
    }
}

/// A sparse matrix's index and value arrays cut into consecutive disjoint parts of the given
/// lengths, one per parallel task that fills them.
fn split_entries<'a>(mut indices: &'a mut [u32], mut values: &'a mut [f32], lengths: impl Iterator<Item = usize>) -> Vec<(&'a mut [u32], &'a mut [f32])> {
    lengths
        .map(|len| {
            let (i, rest_indices) = std::mem::take(&mut indices).split_at_mut(len);
            let (v, rest_values) = std::mem::take(&mut values).split_at_mut(len);
            (indices, values) = (rest_indices, rest_values);
            (i, v)
        })
        .collect()
}

/// The encoder's input in compressed sparse column form: column j of X holds
/// `values[colptr[j]..colptr[j + 1]]` in the cells `rows[…]`, cells in increasing order. The
/// weight's gradient reads it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseColumns {
    pub n_rows: usize,
    pub colptr: Vec<usize>,
    pub rows: Vec<u32>,
    pub values: Vec<f32>,
}

impl SparseColumns {
    /// The same matrix as `x`, by column.
    ///
    /// Built in blocks of columns in parallel: each block finds its part of every cell's (sorted)
    /// columns, counts, then fills its own range of the output. One pass over the whole batch
    /// scattering into all columns at once took ~20 ms at Kaggle size (random writes over
    /// 12 MB); a block's write cursors and output stay in cache.
    pub fn from_rows(x: &SparseRows) -> Self {
        const BLOCKS: usize = 16;
        let (m, cols) = (x.n_rows(), x.n_cols);
        let block_width = cols.div_ceil(BLOCKS).max(1);
        let bounds: Vec<(usize, usize)> = (0..BLOCKS).map(|b| ((b * block_width).min(cols), ((b + 1) * block_width).min(cols))).collect();
        let cell_range = |c: usize, lo: usize, hi: usize| {
            let idx = &x.cols[x.rowptr[c]..x.rowptr[c + 1]];
            let start = idx.partition_point(|&j| (j as usize) < lo);
            let end = idx.partition_point(|&j| (j as usize) < hi);
            x.rowptr[c] + start..x.rowptr[c] + end
        };
        // Entries per column, each block on its own.
        let counts: Vec<Vec<usize>> = bounds
            .par_iter()
            .map(|&(lo, hi)| {
                let mut n = vec![0usize; hi - lo];
                for c in 0..m {
                    cell_range(c, lo, hi).for_each(|e| n[x.cols[e] as usize - lo] += 1);
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
        // Each block's output range.
        let slices = split_entries(&mut rows, &mut values, bounds.iter().map(|&(lo, hi)| colptr[hi] - colptr[lo]));
        bounds.into_par_iter().zip(slices).for_each(|((lo, hi), (r, v))| {
            // Write cursors relative to the block's start; cells in order, so each column's
            // cells come out sorted.
            let base = colptr[lo];
            let mut next: Vec<usize> = colptr[lo..hi].iter().map(|&p| p - base).collect();
            for c in 0..m {
                for e in cell_range(c, lo, hi) {
                    let at = &mut next[x.cols[e] as usize - lo];
                    (r[*at], v[*at]) = (c as u32, x.values[e]);
                    *at += 1;
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

/// The batch's encoder input in both forms: by row for y = X·W, by column for dW = Xᵀ·dY.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SparseInput {
    pub rows: SparseRows,
    pub columns: SparseColumns,
}

impl SparseInput {
    /// See [`SparseRows::from_batch`].
    pub fn from_batch(batch: &SparseBatch, f: impl Fn(f32) -> f32 + Sync, covariates: &[f32], width: usize) -> Self {
        let rows = SparseRows::from_batch(batch, f, covariates, width);
        let columns = SparseColumns::from_rows(&rows);
        Self { rows, columns }
    }
}

/// Input columns (W rows) per block of the forward product: a block's rows of W, one band wide
/// and packed (2,048 × 128 f32 = 1 MiB), stay in L2 while every cell's terms in the block are
/// summed. examples/encoder_bench on the AMD EPYC (Zen 4, 1 MiB L2 a core): 256 / 512 / 1,024 /
/// 2,048 rows and all 18,211 at once 57–62 / 52–54 / 50–52 / 47–49 / 67–79 ms. Storing the packed
/// block in bf16 (half the bytes, `precision: bf16`) was slower: 58–62 ms.
const FORWARD_COLUMN_BLOCK: usize = 2048;

/// Input columns (dW rows) per task of the weight gradient.
const GRAD_COLUMNS_PER_TASK: usize = 512;

/// y = X·W + b: X [m, k] sparse, W [k, n] and b [n] row-major f32.
///
/// Tasks are bands of [`LANES`] output columns; within one, blocks of W's rows in order, and for
/// each cell its terms in the block summed into its row of y with the row in registers
/// ([`accumulate_gathered_rows`]). Each y element is b + its terms in column order, as in
/// [`forward_axpy`]: the same bits.
pub fn forward(x: &SparseRows, w: &[f32], b: &[f32]) -> Vec<f32> {
    forward_blocked(x, w, b, FORWARD_COLUMN_BLOCK)
}

/// [`forward`] with `column_block` W rows per block (examples/encoder_bench tries others).
pub fn forward_blocked(x: &SparseRows, w: &[f32], b: &[f32], column_block: usize) -> Vec<f32> {
    let (m, k, n) = (x.n_rows(), x.n_cols, b.len());
    assert_eq!(w.len(), k * n, "sparse_linear: W of {} values for {k} × {n}", w.len());
    let column_block = column_block.max(1);
    let blocks = k.div_ceil(column_block);
    // Where each cell's terms of each block end (cell c's block b: `ends[c·blocks + b]`), found
    // once for all bands.
    let mut ends = vec![0usize; m * blocks];
    ends.par_chunks_mut(blocks.max(1)).enumerate().for_each(|(c, ends)| {
        let mut e = x.rowptr[c];
        for (b, end) in ends.iter_mut().enumerate() {
            let hi = ((b + 1) * column_block).min(k);
            while e < x.rowptr[c + 1] && (x.cols[e] as usize) < hi {
                e += 1;
            }
            *end = e;
        }
    });
    let bands: Vec<Vec<f32>> = (0..n.div_ceil(LANES))
        .into_par_iter()
        .map(|band| {
            let (c0, width) = (band * LANES, LANES.min(n - band * LANES));
            let mut y: Vec<f32> = b[c0..c0 + width].repeat(m);
            let mut packed = vec![0f32; column_block.min(k) * width];
            for block in 0..blocks {
                let (lo, hi) = (block * column_block, ((block + 1) * column_block).min(k));
                // The block's band of W, packed: W's rows are 4 KiB apart at n = 1,024, so their
                // 512-byte bands fall on the same few cache sets and evict each other (the
                // unpacked form ran at the speed of the axpy one).
                for (j, dst) in (lo..hi).zip(packed.chunks_mut(width)) {
                    dst.copy_from_slice(&w[j * n + c0..j * n + c0 + width]);
                }
                for c in 0..m {
                    let start = if block == 0 { x.rowptr[c] } else { ends[c * blocks + block - 1] };
                    let terms = start..ends[c * blocks + block];
                    accumulate_gathered_rows(&mut y[c * width..(c + 1) * width], &x.values[terms.clone()], &x.cols[terms], &packed, width, 0, lo as u32);
                }
            }
            y
        })
        .collect();
    join_bands(&bands, m, n, LANES)
}

/// The [m, n] row-major matrix from its column bands (band i: columns i·`band`.., [m, width]).
fn join_bands(bands: &[Vec<f32>], m: usize, n: usize, band: usize) -> Vec<f32> {
    let mut y = vec![0f32; m * n];
    y.par_chunks_mut(n.max(1)).enumerate().for_each(|(c, row)| {
        for (i, block) in bands.iter().enumerate() {
            let (c0, width) = (i * band, band.min(n - i * band));
            row[c0..c0 + width].copy_from_slice(&block[c * width..(c + 1) * width]);
        }
    });
    y
}

/// dW = Xᵀ·dY: X [m, k] sparse, dY [m, n] row-major; dW [k, n]. Row j of dW sums the dY rows of
/// column j's cells, in cell order, one band of [`LANES`] columns at a time with the band in
/// registers; a task's columns go band by band, so one packed band of dY (m × 128 f32) serves
/// them all from L2. The same bits as [`weight_grad_axpy`].
pub fn weight_grad(x: &SparseColumns, dy: &[f32], n: usize) -> Vec<f32> {
    let k = x.n_cols();
    assert_eq!(dy.len(), x.n_rows * n, "sparse_linear: dY of {} values for {} × {n}", dy.len(), x.n_rows);
    let mut dw = vec![0f32; k * n];
    dw.par_chunks_mut((GRAD_COLUMNS_PER_TASK * n).max(1)).enumerate().for_each(|(task, block)| {
        let mut packed = vec![0f32; x.n_rows * LANES.min(n)];
        for c0 in (0..n).step_by(LANES) {
            let width = LANES.min(n - c0);
            // dY's band packed (as W's in the forward: its rows' bands would share cache sets).
            // Packing it once for all tasks instead, between parallel passes, was no faster.
            for (dst, src) in packed.chunks_mut(width).zip(dy.chunks(n)) {
                dst.copy_from_slice(&src[c0..c0 + width]);
            }
            for (jj, row) in block.chunks_mut(n).enumerate() {
                let j = task * GRAD_COLUMNS_PER_TASK + jj;
                let terms = x.colptr[j]..x.colptr[j + 1];
                accumulate_gathered_rows(&mut row[c0..c0 + width], &x.values[terms.clone()], &x.rows[terms], &packed, width, 0, 0);
            }
        }
    });
    dw
}

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

/// [`forward`] as one axpy into a cell's output row per term (the output in 256-column bands
/// per task): the earlier form, ~3× slower at Kaggle size; kept as the reference the tests and
/// examples/encoder_bench compare with.
pub fn forward_axpy(x: &SparseColumns, w: &[f32], b: &[f32]) -> Vec<f32> {
    const BAND: usize = 256;
    let (m, k, n) = (x.n_rows, x.n_cols(), b.len());
    assert_eq!(w.len(), k * n);
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
    join_bands(&bands, m, n, BAND)
}

/// [`weight_grad`] as one axpy into dW's row per term: the earlier form, kept as the reference.
pub fn weight_grad_axpy(x: &SparseColumns, dy: &[f32], n: usize) -> Vec<f32> {
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
    x: std::sync::Arc<SparseInput>,
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
        if k != self.x.rows.n_cols || b.len() != n {
            candle_core::bail!("sparse_linear: input of {} columns, weight {:?} and bias {:?} do not fit", self.x.rows.n_cols, l1.shape(), l2.shape());
        }
        Ok((CpuStorage::F32(forward(&self.x.rows, w, b)), Shape::from((self.x.rows.n_rows(), n))))
    }

    fn bwd(&self, w: &Tensor, _b: &Tensor, _res: &Tensor, dy: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (k, n) = w.dims2()?;
        let dw = Tensor::from_vec(with_cpu_f32(dy, "output gradient", |dy| weight_grad(&self.x.columns, dy, n))?, (k, n), w.device())?;
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
pub fn linear_of_sparse_data(x: std::sync::Arc<SparseInput>, weight: &Tensor, bias: &Tensor, handed: Option<HandedGrads>) -> candle_core::Result<Tensor> {
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

    /// 3 cells × (2 genes + 2 covariates), W [4, 300] (crosses the bands): the products against
    /// hand sums.
    #[test]
    fn products_match_hand_computed_sums() {
        let batch = SparseBatch { n_genes: 2, indptr: vec![0, 2, 2, 3], indices: vec![0, 1, 1], data: vec![2.0, 5.0, 1.0], scale: vec![1.0; 3] };
        let covariates = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0];
        let x = SparseInput::from_batch(&batch, |v| v * 10.0, &covariates, 2);
        let dense = vec![20.0, 50.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 10.0, 0.0, 0.0];
        assert_eq!(x.columns.to_dense(), dense);
        assert_eq!(x.rows.rowptr, vec![0, 3, 4, 5]);
        assert_eq!(x.rows.cols, vec![0, 1, 2, 3, 1]);
        let n = 300;
        let w: Vec<f32> = (0..4 * n).map(|i| (i % 7) as f32 - 3.0).collect();
        let b: Vec<f32> = (0..n).map(|i| i as f32 / 8.0).collect();
        for y in [forward(&x.rows, &w, &b), forward_blocked(&x.rows, &w, &b, 1), forward_axpy(&x.columns, &w, &b)] {
            for c in 0..3 {
                for o in [0, 127, 128, 255, 256, 299] {
                    let want: f32 = b[o] + (0..4).map(|j| dense[c * 4 + j] * w[j * n + o]).sum::<f32>();
                    assert_eq!(y[c * n + o], want, "y[{c}, {o}]");
                }
            }
        }
        let dy: Vec<f32> = (0..3 * n).map(|i| (i % 5) as f32 * 0.5).collect();
        for dw in [weight_grad(&x.columns, &dy, n), weight_grad_axpy(&x.columns, &dy, n)] {
            for j in 0..4 {
                for o in [0, 128, 299] {
                    let want: f32 = (0..3).map(|c| dense[c * 4 + j] * dy[c * n + o]).sum();
                    assert_eq!(dw[j * n + o], want, "dW[{j}, {o}]");
                }
            }
        }
    }

    /// A batch of Kaggle-like shape, smaller: the register-blocked products give the axpy
    /// forms' bits (the same sums in the same order), whatever the block size, and both forms
    /// agree with a dense f64 product to f32 rounding.
    #[test]
    fn blocked_products_give_the_axpy_bits() {
        use rand::{Rng, SeedableRng};
        let (m, g, width, n) = (70usize, 900usize, 3usize, 300usize);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let (mut indptr, mut indices, mut data) = (vec![0usize], Vec::new(), Vec::new());
        for _ in 0..m {
            for j in 0..g {
                if rng.random::<f64>() < 0.08 {
                    indices.push(j as u32);
                    data.push(rng.random_range(1..20) as f32);
                }
            }
            indptr.push(indices.len());
        }
        let batch = SparseBatch { n_genes: g, indptr, indices, data, scale: vec![1.0; m] };
        let covariates: Vec<f32> = (0..m * width).map(|i| if i % 4 == 0 { 1.0 } else { 0.0 }).collect();
        let x = SparseInput::from_batch(&batch, f32::ln_1p, &covariates, width);
        let k = g + width;
        let w: Vec<f32> = (0..k * n).map(|_| rng.random_range(-1.0..1.0)).collect();
        let b: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
        let reference = forward_axpy(&x.columns, &w, &b);
        for block in [1, 37, 256, FORWARD_COLUMN_BLOCK, k + 5] {
            assert!(forward_blocked(&x.rows, &w, &b, block) == reference, "forward, blocks of {block} columns");
        }
        let dense = x.columns.to_dense();
        for (c, o) in [(0, 0), (33, 131), (69, 299)] {
            let exact: f64 = b[o] as f64 + (0..k).map(|j| dense[c * k + j] as f64 * w[j * n + o] as f64).sum::<f64>();
            let scale: f64 = (0..k).map(|j| (dense[c * k + j] as f64 * w[j * n + o] as f64).abs()).sum();
            assert!((reference[c * n + o] as f64 - exact).abs() <= 1e-5 * scale, "y[{c}, {o}] {} against {exact}", reference[c * n + o]);
        }
        let dy: Vec<f32> = (0..m * n).map(|_| rng.random_range(-1.0..1.0)).collect();
        assert!(weight_grad(&x.columns, &dy, n) == weight_grad_axpy(&x.columns, &dy, n), "dW");
    }
}
