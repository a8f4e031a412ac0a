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
pub use crate::fast_math::{exp_f32, ln_f32, log1p_f32, DenseFloat};
pub use crate::nb_math::{dense_row_generic, digamma, nb_log_likelihood, DenseRow, Dispersion, Link, RowGrads};
use crate::nb_sparse::{SparseRow, SparseScratch};
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};
use num_traits::Float;
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::sync::{Arc, Mutex};

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

    /// The NB-VAE encoder's input [cells, genes + covariates] rounded to bf16, built straight
    /// from the sparse counts: `f` of each count (raw or log1p), then each cell's row of
    /// `covariates` (row-major [cells, width]). The same bits as rounding the f32 dense
    /// [`SparseBatch::dense_map`] concatenated with the covariates.
    pub fn encoder_input_bf16(&self, f: impl Fn(f32) -> f32 + Sync, covariates: &[f32], width: usize) -> Vec<u16> {
        let cols = self.n_genes + width;
        let mut out = vec![0u16; self.n_cells() * cols];
        out.par_chunks_mut(cols.max(1)).enumerate().for_each(|(c, row)| {
            for j in self.indptr[c]..self.indptr[c + 1] {
                row[self.indices[j] as usize] = crate::bf16::to_bf16_bits(f(self.data[j]));
            }
            for (o, &v) in row[self.n_genes..].iter_mut().zip(&covariates[c * width..(c + 1) * width]) {
                *o = crate::bf16::to_bf16_bits(v);
            }
        });
        out
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

/// Rows of a table added to each cell's logits inside the op ([`NbNll::apply_with_table`]):
/// cell c gets `table[ids[c · per_cell + i]]` for i = 0, 1, … in turn — the decoder's additive
/// effects. Adding them here, in the pass that reads the logits anyway, saves candle's gathered
/// [B, G] rows, the sums and, in the backward pass, a zero-filled [B, G] gradient and an addition
/// per term (measured: ~50 ms of a ~0.36 s Kaggle-scale step with one effect column).
#[derive(Debug, Clone)]
pub struct LogitOffsets {
    pub ids: Vec<u32>,
    pub per_cell: usize,
}

/// The fused NB negative log-likelihood: `logits` [B, G] and `theta` [G] → per-cell NLL [B].
/// With `with_grad` it keeps d(NLL_b)/d logit and d(NLL_b)/dθ per entry for the backward pass.
pub struct NbNll {
    batch: Arc<SparseBatch>,
    dispersion: Dispersion,
    link: Link,
    with_grad: bool,
    offsets: Option<LogitOffsets>,
    grads: Mutex<Option<(Vec<f32>, Vec<f32>)>>,
}

impl NbNll {
    pub fn new(batch: Arc<SparseBatch>, dispersion: Dispersion, link: Link, with_grad: bool) -> Self {
        Self { batch, dispersion, link, with_grad, offsets: None, grads: Mutex::new(None) }
    }

    /// The per-cell NLL of `logits` + the `offsets` rows of `table` ([levels, G], the logits'
    /// dtype), the sums never materialised; gradients to all three (CPU only).
    pub fn apply_with_table(mut self, logits: &Tensor, theta: &Tensor, table: &Tensor, offsets: LogitOffsets) -> candle_core::Result<Tensor> {
        let (logits, theta, table) = (logits.contiguous()?, theta.contiguous()?, table.contiguous()?);
        self.offsets = Some(offsets);
        if self.with_grad {
            logits.apply_op3(&theta, &table, self)
        } else {
            logits.apply_op3_no_bwd(&theta, &table, &self)
        }
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
    fn forward<T: DenseFloat>(&self, x: &[T], theta: &[T], table: Option<&[T]>) -> (Vec<f64>, Option<(Vec<f32>, Vec<f32>)>) {
        // One copy of the loops per link, so that the dense loop has no branch on it.
        match self.link {
            Link::Sigmoid => self.forward_link::<T, false>(x, theta, table),
            Link::Softplus => self.forward_link::<T, true>(x, theta, table),
        }
    }

    #[allow(clippy::type_complexity)]
    fn forward_link<T: DenseFloat, const SOFTPLUS: bool>(&self, x: &[T], theta: &[T], table: Option<&[T]>) -> (Vec<f64>, Option<(Vec<f32>, Vec<f32>)>) {
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
        let offsets = table.zip(self.offsets.as_ref());
        let row = |c: usize, out: &mut f64, (scratch, shifted, sparse): &mut (Vec<T>, Vec<T>, SparseScratch), gx: Option<RowGrads<'_>>| {
            let mut xs = &x[c * g..(c + 1) * g];
            if let Some((table, o)) = offsets {
                // logits + the cell's table rows, added in column order (as candle's adds did).
                shifted.clear();
                shifted.extend_from_slice(xs);
                for &id in &o.ids[c * o.per_cell..(c + 1) * o.per_cell] {
                    add_row(shifted, &table[id as usize * g..(id as usize + 1) * g]);
                }
                xs = &shifted[..];
            }
            let scale = b.scale[c] as f64;
            let scale_t: T = from_f64(scale);
            // k = 0 for every gene ([`DenseFloat::dense_row`]), vectorised.
            scratch.resize(g, T::zero());
            let dense = DenseRow { x: xs, r: &r_t, dr: &dr_t, scale: scale_t, nll: scratch };
            let (total, gx) = match gx {
                None => (T::dense_row::<SOFTPLUS>(dense, None), None),
                Some((gxs, gts)) => {
                    let total = T::dense_row::<SOFTPLUS>(dense, Some((&mut *gxs, &mut *gts)));
                    // SAFETY: dense_row wrote every element of both rows.
                    (total, Some(unsafe { (assume_init(gxs), assume_init(gts)) }))
                }
            };
            // Entries with k > 0 (crate::nb_sparse): the whole −log NB in f64 instead of the
            // dense term, the gradients overwritten with their f64 values.
            let entries = SparseRow {
                genes: &b.indices[b.indptr[c]..b.indptr[c + 1]],
                counts: &b.data[b.indptr[c]..b.indptr[c + 1]],
                x: xs,
                r: &r,
                r_t: &r_t,
                lgamma_r: &lgamma_r,
                digamma_r: &digamma_r,
                scale,
                scale_t,
                link,
                dispersion: disp,
            };
            *out = T::sparse_row(&entries, total, gx, sparse);
        };
        match grads.as_mut() {
            None => nll.par_iter_mut().enumerate().for_each_init(<(Vec<T>, Vec<T>, SparseScratch)>::default, |s, (c, out)| row(c, out, s, None)),
            Some((gx, gt)) => nll
                .par_iter_mut()
                .zip(gx.spare_capacity_mut()[..n * g].par_chunks_mut(g))
                .zip(gt.spare_capacity_mut()[..n * g].par_chunks_mut(g))
                .enumerate()
                .for_each_init(<(Vec<T>, Vec<T>, SparseScratch)>::default, |s, (c, ((out, gx), gt))| row(c, out, s, Some((gx, gt)))),
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
        self.fwd_with(s1, l1, s2, l2, None)
    }

    fn bwd(&self, logits: &Tensor, theta: &Tensor, res: &Tensor, grad_res: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (gx, gt, _) = self.bwd_with(logits, theta, None, res, grad_res)?;
        Ok((gx, gt))
    }
}

impl candle_core::CustomOp3 for NbNll {
    fn name(&self) -> &'static str {
        "nb_nll_offsets"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        self.fwd_with(s1, l1, s2, l2, Some((s3, l3)))
    }

    fn bwd(&self, logits: &Tensor, theta: &Tensor, table: &Tensor, res: &Tensor, grad_res: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        self.bwd_with(logits, theta, Some(table), res, grad_res)
    }
}

impl NbNll {
    /// The batch, θ and the offset table fit logits of `dims`.
    pub(crate) fn check_shapes(&self, dims: &[usize], theta_len: usize, table_dims: Option<&[usize]>) -> candle_core::Result<()> {
        let b = &*self.batch;
        if dims.len() != 2 || dims[0] != b.n_cells() || dims[1] != b.n_genes || theta_len != b.n_genes {
            candle_core::bail!("nb_nll: logits {:?} and theta [{}] do not match a batch of {} cells × {} genes", dims, theta_len, b.n_cells(), b.n_genes);
        }
        if let Some(td) = table_dims {
            let o = self.offsets.as_ref().ok_or_else(|| candle_core::Error::Msg("nb_nll: a table without offsets".into()))?;
            if td.len() != 2 || td[1] != b.n_genes || o.ids.len() != o.per_cell * b.n_cells() || o.ids.iter().any(|&i| i as usize >= td[0]) {
                candle_core::bail!("nb_nll: offset table {:?} and {} ids do not match a batch of {} cells × {} genes", td, o.ids.len(), b.n_cells(), b.n_genes);
            }
        }
        Ok(())
    }

    /// The op with `offsets` (for [`crate::nb_head`], which adds the table rows the same way).
    pub(crate) fn with_offsets(mut self, offsets: LogitOffsets) -> Self {
        self.offsets = Some(offsets);
        self
    }

    /// The forward pass on f32 slices whose shapes [`NbNll::check_shapes`] accepted (logits
    /// [B, G] row-major, the table [levels, G]): the per-cell NLL; the gradients stay in the op
    /// for [`NbNll::scaled_grads`].
    pub(crate) fn forward_f32(&self, logits: &[f32], theta: &[f32], table: Option<&[f32]>) -> Vec<f32> {
        let (nll, grads) = self.forward(logits, theta, table);
        if let Ok(mut slot) = self.grads.lock() {
            *slot = grads;
        }
        nll.iter().map(|&v| v as f32).collect()
    }

    /// Training's backward pass on the op's own f32 buffers, given each cell's weight `w`
    /// (d loss / d NLL_b): d loss / d logits (the buffer scaled in place: no B × G temporaries),
    /// dθ, and the offset table's gradient when the op has offsets and `table_levels` is given.
    #[allow(clippy::type_complexity)]
    pub(crate) fn scaled_grads(&self, w: &[f32], table_levels: Option<usize>) -> candle_core::Result<(Vec<f32>, Vec<f32>, Option<Vec<f32>>)> {
        let (gx, gt) = self.take_grads()?;
        let g = self.batch.n_genes;
        let gx = scale_rows(gx, w, g);
        let dtable = table_levels.zip(self.offsets.as_ref()).map(|(levels, o)| offset_rows_grad(&gx, o, levels, g));
        let dtheta = weighted_column_sums(&gt, w, g);
        Ok((gx, dtheta, dtable))
    }

    fn take_grads(&self) -> candle_core::Result<(Vec<f32>, Vec<f32>)> {
        self.grads
            .lock()
            .map_err(|_| candle_core::Error::Msg("nb_nll: gradient lock poisoned".into()))?
            .take()
            .ok_or_else(|| candle_core::Error::Msg("nb_nll: backward called twice or without a forward pass".into()))
    }

    fn fwd_with(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, table: Option<(&CpuStorage, &Layout)>) -> candle_core::Result<(CpuStorage, Shape)> {
        let b = &*self.batch;
        self.check_shapes(l1.shape().dims(), l2.shape().elem_count(), table.map(|(_, l)| l.shape().dims()))?;
        match (s1, s2, table.map(|(s, _)| s)) {
            (CpuStorage::F32(_), CpuStorage::F32(_), None | Some(CpuStorage::F32(_))) => {
                let table = table.map(|(s, l)| contiguous_slice::<f32>(s, l)).transpose()?;
                let nll = self.forward_f32(contiguous_slice::<f32>(s1, l1)?, contiguous_slice::<f32>(s2, l2)?, table);
                Ok((CpuStorage::F32(nll), Shape::from(b.n_cells())))
            }
            (CpuStorage::F64(_), CpuStorage::F64(_), None | Some(CpuStorage::F64(_))) => {
                let table = table.map(|(s, l)| contiguous_slice::<f64>(s, l)).transpose()?;
                let (nll, grads) = self.forward(contiguous_slice::<f64>(s1, l1)?, contiguous_slice::<f64>(s2, l2)?, table);
                if let Ok(mut slot) = self.grads.lock() {
                    *slot = grads;
                }
                Ok((CpuStorage::F64(nll), Shape::from(b.n_cells())))
            }
            _ => candle_core::bail!("nb_nll: logits, theta (and the offset table) must all be f32 or all f64"),
        }
    }

    #[allow(clippy::type_complexity)]
    fn bwd_with(&self, logits: &Tensor, _theta: &Tensor, table: Option<&Tensor>, _res: &Tensor, grad_res: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, g) = (self.batch.n_cells(), self.batch.n_genes);
        let dtype = logits.dtype();
        let device = logits.device();
        if dtype == DType::F32 {
            // Training: scale and reduce the op's own buffers in place (no B × G temporaries).
            let levels = table.map(|t| t.dim(0)).transpose()?;
            let (gx, dtheta, dtable) = self.scaled_grads(&grad_res.to_vec1::<f32>()?, levels)?;
            let dtable = dtable.zip(table).map(|(d, t)| Tensor::from_vec(d, t.shape(), device)).transpose()?;
            return Ok((Some(Tensor::from_vec(gx, (n, g), device)?), Some(Tensor::from_vec(dtheta, g, device)?), dtable));
        }
        let (gx, gt) = self.take_grads()?;
        let offsets = table.zip(self.offsets.as_ref());
        let w = grad_res.reshape((n, 1))?;
        let gx = Tensor::from_vec(gx, (n, g), device)?.to_dtype(dtype)?.broadcast_mul(&w)?;
        // dθ_j = Σ_b grad_res_b · d(NLL_b)/dθ_j
        let gt = w.t()?.matmul(&Tensor::from_vec(gt, (n, g), device)?.to_dtype(dtype)?)?.reshape(g)?;
        let dtable = match offsets {
            Some((t, o)) => {
                let mut d = t.zeros_like()?;
                for i in 0..o.per_cell {
                    let ids: Vec<u32> = o.ids.iter().skip(i).step_by(o.per_cell).copied().collect();
                    d = d.index_add(&Tensor::from_vec(ids, n, device)?, &gx, 0)?;
                }
                Some(d)
            }
            None => None,
        };
        Ok((Some(gx), Some(gt), dtable))
    }
}

/// x += y elementwise (one of [`LogitOffsets`]' rows onto a cell's logits).
fn add_row<T: DenseFloat>(x: &mut [T], y: &[T]) {
    x.iter_mut().zip(y).for_each(|(x, &y)| *x = *x + y);
}

/// The offset table's gradient from the logits' (`gx`, [cells, genes]): row l sums the rows of
/// the cells whose i-th id is l, for each i, in cell order — candle's `index_add` order, so the
/// bits are those of the composed ops. Columns in parallel blocks (the same bits for any
/// thread count).
fn offset_rows_grad(gx: &[f32], o: &LogitOffsets, levels: usize, cols: usize) -> Vec<f32> {
    const BLOCK: usize = 512;
    let n_blocks = cols.div_ceil(BLOCK);
    let blocks: Vec<Vec<f32>> = (0..n_blocks)
        .into_par_iter()
        .map(|blk| {
            let (c0, width) = (blk * BLOCK, BLOCK.min(cols - blk * BLOCK));
            let mut total = vec![0f32; levels * width];
            let mut part = vec![0f32; levels * width];
            for i in 0..o.per_cell {
                part.fill(0.0);
                for (c, row) in gx.chunks(cols).enumerate() {
                    let l = o.ids[c * o.per_cell + i] as usize;
                    part[l * width..(l + 1) * width].iter_mut().zip(&row[c0..c0 + width]).for_each(|(a, &v)| *a += v);
                }
                total.iter_mut().zip(&part).for_each(|(t, &p)| *t += p);
            }
            total
        })
        .collect();
    let mut out = vec![0f32; levels * cols];
    for (blk, block) in blocks.iter().enumerate() {
        let (c0, width) = (blk * BLOCK, BLOCK.min(cols - blk * BLOCK));
        for l in 0..levels {
            out[l * cols + c0..l * cols + c0 + width].copy_from_slice(&block[l * width..(l + 1) * width]);
        }
    }
    out
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
