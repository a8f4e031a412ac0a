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
        let mut h = x.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward_in(&h, precision)?;
            if i + 1 < self.layers.len() {
                h = h.relu()?;
            }
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
