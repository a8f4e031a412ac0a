//! The decoder's last layer and the NB likelihood as one op, for training steps on the CPU with
//! bf16 products: per-cell NLL of logits = h·W + b (+ the cells' effect-table rows) under the
//! batch's counts, the logits never a candle tensor.
//!
//! Composed ([`crate::bf16::linear`] then [`NbNll`]) the two ops hand each other the [B, G]
//! logits' gradient through candle's autograd, which adds it into a zeroed tensor first, and the
//! layer returns its [in, G] weight gradient the same way: at Kaggle size two memsets and two
//! additions over 75 MB each, ~5 % of a bf16 step. Here the NB op's gradient buffer is scaled in
//! place and rounded to bf16 for the layer's products directly, and dW, dθ and the table's
//! gradient go to [`HandedGrads`] (moved into the gradient store before the optimiser step). The
//! arithmetic is that of the composed ops, in the same order: the same values, so the same
//! training (tests/network.rs compares both).
use crate::bf16::{f32_slice, gemm, to_bf16, to_bf16_with_column_sums, transpose, with_cpu_f32};
use crate::handed_grads::HandedGrads;
use crate::nb_loss::NbNll;
use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use std::sync::Mutex;

/// The op on (h, W, b); θ and the effect table are read from their variables' tensors.
pub struct NbHead {
    nll: NbNll,
    theta: Tensor,
    /// The effect table [levels, G] (f32) when the NB op adds its rows.
    table: Option<Tensor>,
    handed: HandedGrads,
    /// h and W in bf16 from the forward pass, for the backward one.
    saved: Mutex<Option<(Vec<u16>, Vec<u16>)>>,
}

impl NbHead {
    /// `nll` built `with_grad` (and `with_offsets` when `table` is given); `theta` and `table`
    /// the variables' own tensors (their gradients are pushed to `handed` under those ids).
    pub fn new(nll: NbNll, theta: &Tensor, table: Option<&Tensor>, handed: HandedGrads) -> Self {
        Self { nll, theta: theta.clone(), table: table.cloned(), handed, saved: Mutex::new(None) }
    }

    /// Per-cell NLL [B] of h [B, in] through the layer (W [in, G], b [G], f32 CPU variables).
    pub fn apply(self, h: &Tensor, weight: &Tensor, bias: &Tensor) -> candle_core::Result<Tensor> {
        h.contiguous()?.apply_op3(&weight.contiguous()?, &bias.contiguous()?, self)
    }
}

impl CustomOp3 for NbHead {
    fn name(&self) -> &'static str {
        "nb_head"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout, s3: &CpuStorage, l3: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (h, w, b) = (f32_slice(s1, l1, "h")?, f32_slice(s2, l2, "weight")?, f32_slice(s3, l3, "bias")?);
        let (m, k) = l1.shape().dims2()?;
        let (k2, n) = l2.shape().dims2()?;
        if k != k2 || b.len() != n {
            candle_core::bail!("nb_head: h {:?}, weight {:?} and bias {:?} do not fit", l1.shape(), l2.shape(), l3.shape());
        }
        let table_dims = self.table.as_ref().map(|t| t.dims().to_vec());
        self.nll.check_shapes(&[m, n], self.theta.elem_count(), table_dims.as_deref())?;
        let (hb, wb) = (to_bf16(h), to_bf16(w));
        let logits = gemm(m, k, n, &hb, false, &wb, false, Some(b))?;
        let nll = with_cpu_f32(&self.theta, "theta", |theta| match &self.table {
            Some(t) => with_cpu_f32(t, "effect table", |table| self.nll.forward_f32(&logits, theta, Some(table))),
            None => Ok(self.nll.forward_f32(&logits, theta, None)),
        })??;
        if let Ok(mut slot) = self.saved.lock() {
            *slot = Some((hb, wb));
        }
        Ok((CpuStorage::F32(nll), Shape::from(m)))
    }

    fn bwd(&self, h: &Tensor, w: &Tensor, _b: &Tensor, _res: &Tensor, grad_res: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (m, k) = h.dims2()?;
        let n = w.dim(1)?;
        let (hb, wb) = self.saved.lock().ok().and_then(|mut s| s.take()).ok_or_else(|| candle_core::Error::Msg("nb_head: backward called twice or without a forward pass".into()))?;
        let levels = self.table.as_ref().map(|t| t.dim(0)).transpose()?;
        let (dlogits, dtheta, dtable) = self.nll.scaled_grads(&grad_res.to_vec1::<f32>()?, levels)?;
        let device = h.device();
        self.handed.push(&self.theta, Tensor::from_vec(dtheta, n, device)?)?;
        if let (Some(t), Some(d)) = (&self.table, dtable) {
            self.handed.push(t, Tensor::from_vec(d, t.shape(), device)?)?;
        }
        // From here on the layer's backward pass as in crate::bf16::linear.
        let (dyb, db) = to_bf16_with_column_sums(&dlogits, n);
        drop(dlogits);
        let dh = gemm(m, n, k, &dyb, false, &wb, true, None)?;
        let dw = gemm(k, m, n, &transpose(&hb, m, k), false, &dyb, false, None)?;
        self.handed.push(w, Tensor::from_vec(dw, (k, n), device)?)?;
        Ok((Some(Tensor::from_vec(dh, (m, k), device)?), None, Some(Tensor::from_vec(db, n, device)?)))
    }
}
