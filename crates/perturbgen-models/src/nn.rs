//! Fully connected layers over candle variables, initialised from our own seeded RNG
//! (candle's CPU device cannot be seeded, and PyTorch's `nn.Linear` init is what the write-up's
//! models and the comparison benchmark use: U(−1/√fan_in, 1/√fan_in) for weights and biases).
use crate::bf16::MatmulPrecision;
use candle_core::{Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// y = x·W + b with W stored as [fan_in, fan_out] (the transpose of PyTorch's layout), so that
/// neither the forward product nor the weight gradient needs a transposed copy.
pub struct Linear {
    pub weight: Var,
    pub bias: Var,
}

impl Linear {
    pub fn new(fan_in: usize, fan_out: usize, rng: &mut ChaCha8Rng, device: &Device) -> candle_core::Result<Self> {
        let bound = 1.0 / (fan_in as f32).sqrt();
        let w: Vec<f32> = (0..fan_in * fan_out).map(|_| rng.random_range(-bound..bound)).collect();
        let b: Vec<f32> = (0..fan_out).map(|_| rng.random_range(-bound..bound)).collect();
        Ok(Self { weight: Var::from_vec(w, (fan_in, fan_out), device)?, bias: Var::from_vec(b, fan_out, device)? })
    }

    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.matmul(self.weight.as_tensor())?.broadcast_add(self.bias.as_tensor())
    }

    /// [`Linear::forward_in`] for an input no gradient flows to (data, e.g. the NB-VAE
    /// encoder's counts): the backward pass computes dW and db only. candle's matmul backward
    /// always computes dX too, which for the encoder's [B, G] input is a third product of the
    /// layer's full size (G × 1,024 per cell), hence our own op.
    pub fn forward_of_data(&self, x: &Tensor, precision: MatmulPrecision) -> candle_core::Result<Tensor> {
        match precision {
            MatmulPrecision::Bf16 if x.device().is_cpu() => crate::bf16::linear_of_data(x, self.weight.as_tensor(), self.bias.as_tensor()),
            MatmulPrecision::Bf16 => crate::bf16::linear_via_tensors(x, self.weight.as_tensor(), self.bias.as_tensor()),
            MatmulPrecision::F32 if x.device().is_cpu() => x.contiguous()?.apply_op3(&self.weight.as_tensor().contiguous()?, &self.bias.as_tensor().contiguous()?, LinearF32OfData),
            MatmulPrecision::F32 => self.forward(x),
        }
    }

    /// [`Linear::forward`] with the products in `precision` (f32: the same ops as `forward`).
    pub fn forward_in(&self, x: &Tensor, precision: MatmulPrecision) -> candle_core::Result<Tensor> {
        match precision {
            MatmulPrecision::F32 => self.forward(x),
            MatmulPrecision::Bf16 if x.device().is_cpu() => crate::bf16::linear(x, self.weight.as_tensor(), self.bias.as_tensor()),
            MatmulPrecision::Bf16 => crate::bf16::linear_via_tensors(x, self.weight.as_tensor(), self.bias.as_tensor()),
        }
    }
}

/// Linear layers with ReLU between them (none after the last).
pub struct Mlp {
    pub layers: Vec<Linear>,
}

impl Mlp {
    /// `sizes` = [input, hidden…, output].
    pub fn new(sizes: &[usize], seed: u64, device: &Device) -> candle_core::Result<Self> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let layers = sizes.windows(2).map(|w| Linear::new(w[0], w[1], &mut rng, device)).collect::<candle_core::Result<_>>()?;
        Ok(Self { layers })
    }

    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        self.forward_in(x, MatmulPrecision::F32)
    }

    /// [`Mlp::forward`] with every layer's products in `precision`.
    pub fn forward_in(&self, x: &Tensor, precision: MatmulPrecision) -> candle_core::Result<Tensor> {
        match self.layers.last() {
            Some(last) => last.forward_in(&self.forward_to_last(x, precision)?, precision),
            None => Ok(x.clone()),
        }
    }

    /// [`Mlp::forward_in`] up to the last layer's input (after its ReLU): for an op that fuses
    /// the last layer with what follows it ([`crate::nb_head`]).
    pub fn forward_to_last(&self, x: &Tensor, precision: MatmulPrecision) -> candle_core::Result<Tensor> {
        let mut h = x.clone();
        for layer in &self.layers[..self.layers.len().saturating_sub(1)] {
            h = layer.forward_in(&h, precision)?.relu()?;
        }
        Ok(h)
    }

    /// [`Mlp::forward_in`] of data (no gradient to its input: [`Linear::forward_of_data`] for
    /// the first layer).
    pub fn forward_of_data(&self, x: &Tensor, precision: MatmulPrecision) -> candle_core::Result<Tensor> {
        let mut h = x.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            h = if i == 0 { layer.forward_of_data(&h, precision)? } else { layer.forward_in(&h, precision)? };
            if i + 1 < self.layers.len() {
                h = h.relu()?;
            }
        }
        Ok(h)
    }

    /// The rest of [`Mlp::forward_in`] given the first layer's output `h` (before its ReLU).
    pub fn forward_after_first(&self, h: Tensor, precision: MatmulPrecision) -> candle_core::Result<Tensor> {
        let mut h = h;
        for layer in &self.layers[1..] {
            h = layer.forward_in(&h.relu()?, precision)?;
        }
        Ok(h)
    }

    /// Named variables (`<prefix>.<layer>.weight|bias`), for optimisers and checkpoints.
    pub fn vars(&self, prefix: &str) -> Vec<(String, Var)> {
        self.layers
            .iter()
            .enumerate()
            .flat_map(|(i, l)| [(format!("{prefix}.{i}.weight"), l.weight.clone()), (format!("{prefix}.{i}.bias"), l.bias.clone())])
            .collect()
    }
}

/// y = x·W + b in f32 for data x: candle's own products, without dX in the backward pass.
struct LinearF32OfData;

impl candle_core::CustomOp3 for LinearF32OfData {
    fn name(&self) -> &'static str {
        "linear_f32_of_data"
    }

    fn cpu_fwd(
        &self,
        s1: &candle_core::CpuStorage,
        l1: &candle_core::Layout,
        s2: &candle_core::CpuStorage,
        l2: &candle_core::Layout,
        s3: &candle_core::CpuStorage,
        l3: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        let view = |s: &candle_core::CpuStorage, l: &candle_core::Layout| -> candle_core::Result<Tensor> {
            match (s, l.contiguous_offsets()) {
                (candle_core::CpuStorage::F32(v), Some((a, b))) => Tensor::from_slice(&v[a..b], l.shape(), &Device::Cpu),
                _ => candle_core::bail!("linear_f32_of_data: inputs must be contiguous f32"),
            }
        };
        let y = view(s1, l1)?.matmul(&view(s2, l2)?)?.broadcast_add(&view(s3, l3)?)?;
        let shape = y.shape().clone();
        Ok((candle_core::CpuStorage::F32(y.flatten_all()?.to_vec1::<f32>()?), shape))
    }

    fn bwd(&self, x: &Tensor, _w: &Tensor, _b: &Tensor, _res: &Tensor, dy: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dw = x.t()?.matmul(dy)?;
        let db = dy.sum(0)?;
        Ok((None, Some(dw), Some(db)))
    }
}
