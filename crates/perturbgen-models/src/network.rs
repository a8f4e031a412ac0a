//! The model's parameters and forward passes: the conditional decoder shared by both models,
//! the per-gene dispersions, and either the DGD's mixture prior or the VAE's encoder.
use super::bf16::MatmulPrecision;
use super::config::{EncoderInput, ModelKind, TrainConfig};
use super::data::{Conditioning, Covariates, ModelData};
use super::gmm::Gmm;
use super::handed_grads::HandedGrads;
use super::nb_head::NbHead;
use super::nb_loss::{nb_nll, Link, LogitOffsets, NbNll, SparseBatch};
use super::nn::Mlp;
use candle_core::{backprop::GradStore, Device, Tensor, Var, D};
use std::collections::HashMap;
use std::sync::Arc;

pub struct Network {
    pub config: TrainConfig,
    pub covariates: Covariates,
    pub genes: Vec<String>,
    /// concat(z, c) → hidden… → G logits.
    pub decoder: Mlp,
    /// `train.effects`: a per-gene term for every level of every effect column
    /// [levels, G], added to the decoder's logits (zero at initialisation).
    pub effect: Option<Var>,
    /// `train.interaction`: factors F [levels of both columns, rank] and gene loadings W
    /// [rank, G]; a cell of levels (a, b) adds (F[a] ⊙ F[b]) · W to its logits.
    pub interaction: Option<(Var, Var)>,
    /// Per-gene dispersion parameter θ (r = exp θ or exp θ + 1).
    pub theta: Var,
    pub gmm: Option<Gmm>,
    /// VAE: concat(x, c) → hidden… → (μ, log σ²), x the counts or log1p counts
    /// (`encoder_input`).
    pub encoder: Option<Mlp>,
    pub device: Device,
    /// The decoder's products (`train.precision` resolved; f32 unless training sets it).
    pub matmul: MatmulPrecision,
}

impl Network {
    pub fn new(config: TrainConfig, covariates: Covariates, genes: Vec<String>, device: &Device) -> candle_core::Result<Self> {
        let (g, c, d) = (genes.len(), covariates.width(), config.latent_dim);
        let sizes: Vec<usize> = std::iter::once(d + c).chain(config.decoder_hidden.iter().copied()).chain(std::iter::once(g)).collect();
        let decoder = Mlp::new(&sizes, config.seed, device)?;
        let theta = Var::from_vec(vec![config.dispersion.theta(config.dispersion_init) as f32; g], g, device)?;
        let n_effect_levels = covariates.n_effect_levels();
        let effect = if n_effect_levels > 0 { Some(Var::zeros((n_effect_levels, g), candle_core::DType::F32, device)?) } else { None };
        // Factors drawn N(0, 1), loadings zero: the term starts at zero (the model without it)
        // and the loadings' gradient, (F[a] ⊙ F[b])ᵀ · dlogits, is not.
        let interaction = match covariates.n_interaction_levels() {
            0 => None,
            levels => {
                use rand::SeedableRng;
                use rand_distr::Distribution;
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(config.seed.wrapping_add(3));
                let rank = config.interaction_rank;
                let factors: Vec<f32> = (0..levels * rank).map(|_| rand_distr::StandardNormal.sample(&mut rng)).collect();
                Some((Var::from_vec(factors, (levels, rank), device)?, Var::zeros((rank, g), candle_core::DType::F32, device)?))
            }
        };
        let (gmm, encoder) = match config.model {
            ModelKind::Dgd => (Some(Gmm::new(config.gmm.clone(), d, config.seed.wrapping_add(2), device)?), None),
            ModelKind::Nbvae => {
                let sizes: Vec<usize> = std::iter::once(g + c).chain(config.encoder_hidden.iter().copied()).chain(std::iter::once(2 * d)).collect();
                (None, Some(Mlp::new(&sizes, config.seed.wrapping_add(1), device)?))
            }
        };
        Ok(Self { config, covariates, genes, decoder, effect, interaction, theta, gmm, encoder, device: device.clone(), matmul: MatmulPrecision::F32 })
    }

    /// Decoder, dispersions and (VAE) encoder: the variables of the main optimiser.
    pub fn network_vars(&self) -> Vec<(String, Var)> {
        let mut vars = self.decoder.vars("decoder");
        if let Some(effect) = &self.effect {
            vars.push(("effect".into(), effect.clone()));
        }
        if let Some((factors, loadings)) = &self.interaction {
            vars.push(("interaction_factors".into(), factors.clone()));
            vars.push(("interaction_loadings".into(), loadings.clone()));
        }
        vars.push(("theta".into(), self.theta.clone()));
        if let Some(enc) = &self.encoder {
            vars.extend(enc.vars("encoder"));
        }
        vars
    }

    pub fn mixture_vars(&self) -> Vec<(String, Var)> {
        self.gmm.as_ref().map(|g| g.vars()).unwrap_or_default()
    }

    pub fn all_vars(&self) -> Vec<(String, Var)> {
        let mut v = self.network_vars();
        v.extend(self.mixture_vars());
        v
    }

    /// The decoder's logits [B, G]: MLP(concat(z, one-hot covariates)), plus, with
    /// `train.effects`, each cell's rows of the effect table. The effect of a level is the same
    /// in every cell type, so a compound's effect learned in some cell types reaches a cell type
    /// never seen treated with it; in the MLP's input (the write-up) every cell type × well
    /// combination is free to differ, and an unseen one is extrapolated.
    pub fn decode(&self, z: &Tensor, c: &Conditioning) -> candle_core::Result<Tensor> {
        let mut logits = self.decoder.forward_in(&Tensor::cat(&[z, &c.onehot], 1)?, self.matmul)?;
        let column = |ids: &Tensor, k: usize| ids.narrow(1, k, 1)?.squeeze(1)?.contiguous();
        if let (Some(effect), Some(ids)) = (&self.effect, &c.effects) {
            for k in 0..self.covariates.effects.len() {
                let rows = effect.as_tensor().index_select(&column(ids, k)?, 0)?;
                let rows = rows.to_dtype(logits.dtype())?;
                logits = (logits + rows)?;
            }
        }
        if let (Some((factors, loadings)), Some(ids)) = (&self.interaction, &c.effects) {
            // The two interaction columns' ids follow the effect columns' (Covariates::n_ids).
            let k = self.covariates.effects.len();
            let a = factors.as_tensor().index_select(&column(ids, k)?, 0)?;
            let b = factors.as_tensor().index_select(&column(ids, k + 1)?, 0)?;
            let term = (a * b)?.matmul(loadings.as_tensor())?.to_dtype(logits.dtype())?;
            logits = (logits + term)?;
        }
        Ok(logits)
    }

    /// Per-cell NB negative log-likelihood of the batch's counts given `decode(z, c)`. On the
    /// CPU, with additive effects and no interaction, the effect table's rows are added inside
    /// the NB op ([`NbNll::apply_with_table`]: the same values, no [B, G] temporaries);
    /// otherwise [`Network::decode`] then [`Network::nll`].
    ///
    /// With `handed` (a training step: `with_grad`), on the CPU with bf16 products and no
    /// interaction, the decoder's last layer and the NB op run as one ([`NbHead`]): the same
    /// values, with the last layer's weight, θ's and the effect table's gradients handed to
    /// `handed` instead of autograd's store (move them in before the optimiser step).
    pub fn decode_nll(&self, z: &Tensor, c: &Conditioning, batch: Arc<SparseBatch>, with_grad: bool, handed: Option<&HandedGrads>) -> candle_core::Result<Tensor> {
        if let Some(handed) = handed.filter(|_| with_grad && self.device.is_cpu() && self.matmul == MatmulPrecision::Bf16 && self.interaction.is_none()) {
            let last = self.decoder.layers.last().ok_or_else(|| candle_core::Error::Msg("the decoder has no layers".into()))?;
            let h = self.decoder.forward_to_last(&Tensor::cat(&[z, &c.onehot], 1)?, self.matmul)?;
            let nll = NbNll::new(batch, self.config.dispersion, self.config.link, true);
            let head = match (&self.effect, &c.effects) {
                (Some(effect), Some(ids)) => {
                    let per_cell = self.covariates.effects.len();
                    let ids = ids.narrow(1, 0, per_cell)?.flatten_all()?.to_vec1::<u32>()?;
                    NbHead::new(nll.with_offsets(LogitOffsets { ids, per_cell }), self.theta.as_tensor(), Some(effect.as_tensor()), handed.clone())
                }
                _ => NbHead::new(nll, self.theta.as_tensor(), None, handed.clone()),
            };
            return head.apply(&h, last.weight.as_tensor(), last.bias.as_tensor());
        }
        match (&self.effect, &c.effects) {
            (Some(effect), Some(ids)) if self.interaction.is_none() && self.device.is_cpu() => {
                let logits = self.decoder.forward_in(&Tensor::cat(&[z, &c.onehot], 1)?, self.matmul)?;
                let per_cell = self.covariates.effects.len();
                let ids = ids.narrow(1, 0, per_cell)?.flatten_all()?.to_vec1::<u32>()?;
                let table = effect.as_tensor().to_dtype(logits.dtype())?;
                NbNll::new(batch, self.config.dispersion, self.config.link, with_grad).apply_with_table(&logits, self.theta.as_tensor(), &table, LogitOffsets { ids, per_cell })
            }
            _ => self.nll(&self.decode(z, c)?, batch, with_grad),
        }
    }

    /// `train.interaction_penalty` λ times the interaction's squared norms, counted once per
    /// cell of a batch of `cells` (added to the batch's summed loss); None without an
    /// interaction or with λ = 0.
    pub fn interaction_penalty(&self, cells: usize) -> candle_core::Result<Option<Tensor>> {
        let lambda = self.config.interaction_penalty;
        match &self.interaction {
            Some((factors, loadings)) if lambda > 0.0 => {
                let norms = (factors.as_tensor().sqr()?.sum_all()? + loadings.as_tensor().sqr()?.sum_all()?)?;
                Ok(Some((norms * (lambda * cells as f64))?))
            }
            _ => Ok(None),
        }
    }

    /// The NB means m = M · link(decoder(concat(z, c))) [B, G], with `scale` the per-cell M
    /// ([B] or [B, 1]) and the link the model was trained with.
    pub fn nb_means(&self, z: &Tensor, c: &Conditioning, scale: &Tensor) -> candle_core::Result<Tensor> {
        let x = self.decode(z, c)?;
        let b = x.dim(0)?;
        let linked = match self.config.link {
            Link::Sigmoid => candle_nn::ops::sigmoid(&x)?,
            Link::Softplus => super::gmm::softplus(&x)?,
        };
        linked.broadcast_mul(&scale.reshape((b, 1))?.to_dtype(x.dtype())?)
    }

    /// The NB dispersion r of every gene (in gene order).
    pub fn dispersions(&self) -> candle_core::Result<Vec<f64>> {
        let theta = self.theta.as_tensor().to_dtype(candle_core::DType::F64)?.to_vec1::<f64>()?;
        Ok(theta.into_iter().map(|t| self.config.dispersion.r(t)).collect())
    }

    /// Per-cell NB negative log-likelihood of the batch's counts given decoder logits.
    pub fn nll(&self, logits: &Tensor, batch: Arc<SparseBatch>, with_grad: bool) -> candle_core::Result<Tensor> {
        nb_nll(logits, self.theta.as_tensor(), batch, self.config.dispersion, self.config.link, with_grad)
    }

    /// VAE: the batch's counts as the encoder sees them ([B, G]: raw or log1p, `encoder_input`).
    pub fn encoder_input(&self, batch: &SparseBatch) -> candle_core::Result<Tensor> {
        let x = match self.config.encoder_input {
            EncoderInput::Counts => batch.dense_counts(),
            EncoderInput::Log1p => batch.dense_log1p(),
        };
        Tensor::from_vec(x, (batch.n_cells(), batch.n_genes), &self.device)
    }

    /// VAE encoder: (μ, log σ²), each [B, D]; `x` from [`Network::encoder_input`].
    pub fn encode(&self, x: &Tensor, c: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let enc = self.encoder()?;
        // The counts are data: no gradient to them (two products per layer instead of three).
        let h = enc.forward_of_data(&Tensor::cat(&[x, c], 1)?, self.matmul)?;
        self.split_encoding(h)
    }

    /// [`Network::encode`] of a batch's counts (`encoder_input`) and covariates `c`, the first
    /// layer fed from the sparse counts without a dense copy: on the CPU as a sparse product
    /// ([`crate::sparse_linear`], f32), except with bf16 products on a CPU with AMX tiles, where
    /// the input is rounded to bf16 straight from the sparse counts for oneDNN's dense product
    /// (the same bits as `encode(encoder_input(batch), c)`).
    pub fn encode_batch(&self, batch: &SparseBatch, c: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        self.encode_batch_with(batch, c, None)
    }

    /// [`Network::encode_batch`] for a training step: on the CPU the first layer's weight
    /// gradient goes to `handed` instead of autograd's store (move it in before the optimiser
    /// step: [`HandedGrads::move_into`]).
    pub fn encode_batch_with(&self, batch: &SparseBatch, c: &Tensor, handed: Option<&HandedGrads>) -> candle_core::Result<(Tensor, Tensor)> {
        if !self.device.is_cpu() {
            return self.encode(&self.encoder_input(batch)?, c);
        }
        let enc = self.encoder()?;
        let (rows, width) = c.dims2()?;
        let covariates = c.flatten_all()?.to_vec1::<f32>()?;
        let count_value: fn(f32) -> f32 = match self.config.encoder_input {
            EncoderInput::Counts => |k| k,
            EncoderInput::Log1p => f32::ln_1p,
        };
        let first = &enc.layers[0];
        let h = if crate::sparse_linear::sparse_first_layer(self.matmul, &self.device) {
            let x = crate::sparse_linear::SparseInput::from_batch(batch, count_value, &covariates, width);
            crate::sparse_linear::linear_of_sparse_data(Arc::new(x), first.weight.as_tensor(), first.bias.as_tensor(), handed.cloned())?
        } else {
            let x = batch.encoder_input_bf16(count_value, &covariates, width);
            crate::bf16::linear_of_bf16_data(x, rows, first.weight.as_tensor(), first.bias.as_tensor(), handed.cloned())?
        };
        self.split_encoding(enc.forward_after_first(h, self.matmul)?)
    }

    fn encoder(&self) -> candle_core::Result<&Mlp> {
        self.encoder.as_ref().ok_or_else(|| candle_core::Error::Msg("this model has no encoder (DGD)".into()))
    }

    /// The encoder's output [B, 2D] as (μ, log σ²).
    fn split_encoding(&self, h: Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let d = self.config.latent_dim;
        Ok((h.narrow(D::Minus1, 0, d)?, h.narrow(D::Minus1, d, d)?))
    }

    /// DGD, one batch: NB NLL − log p(z) for the latents `z` (rows × d, row order of `rows`)
    /// and its gradients. With `mixture_prior_weight` w (training), −w·log p(mixture params) is
    /// added too. The loss is divided by the configured batch size, not by `rows.len()`: the
    /// write-up sums over the batch, so a smaller last batch weighs less, and its cells'
    /// latent gradients are on the same scale as everyone else's.
    pub fn dgd_batch(&self, data: &ModelData, rows: &[usize], z: Vec<f32>, mixture_prior_weight: Option<f64>) -> candle_core::Result<DgdBatch> {
        let gmm = self.gmm.as_ref().ok_or_else(|| candle_core::Error::Msg("this model has no mixture prior (VAE)".into()))?;
        let z = Var::from_vec(z, (rows.len(), self.config.latent_dim), &self.device)?;
        let conditioning = data.conditioning(rows, &self.device).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let handed = HandedGrads::default();
        let nll = self.decode_nll(z.as_tensor(), &conditioning, Arc::new(data.batch(rows)), true, Some(&handed))?;
        let (nll_sum, lpz_sum) = (nll.sum_all()?, gmm.log_prob(z.as_tensor())?.sum_all()?);
        let mut loss = (&nll_sum - &lpz_sum)?;
        if let Some(w) = mixture_prior_weight {
            loss = (loss - (gmm.log_prior()? * w)?)?;
        }
        if let Some(penalty) = self.interaction_penalty(rows.len())? {
            loss = (loss + penalty)?;
        }
        let mut grads = (loss / self.config.batch_size as f64)?.backward()?;
        handed.move_into(&mut grads)?;
        let z_grad = match grads.get(z.as_tensor()) {
            Some(g) => g.flatten_all()?.to_vec1::<f32>()?,
            None => vec![0.0; rows.len() * self.config.latent_dim],
        };
        Ok(DgdBatch { grads, z_grad, nll_sum: nll_sum.to_scalar::<f32>()? as f64, log_pz_sum: lpz_sum.to_scalar::<f32>()? as f64 })
    }

    /// VAE: encoder means of `rows`, in batches of the training batch size (rows × d).
    pub fn encoder_means(&self, data: &ModelData, rows: &[usize]) -> candle_core::Result<Vec<f32>> {
        let mut z = Vec::with_capacity(rows.len() * self.config.latent_dim);
        for chunk in rows.chunks(self.config.batch_size) {
            let c = data.onehot(chunk, &self.device).map_err(|e| candle_core::Error::Msg(e.to_string()))?;
            let (mu, _) = self.encode_batch(&data.batch(chunk), &c)?;
            z.extend(mu.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(z)
    }

    /// Every parameter as a named tensor (`param.<name>`).
    pub fn tensors(&self) -> Vec<(String, Tensor)> {
        self.all_vars().into_iter().map(|(n, v)| (format!("param.{n}"), v.as_tensor().clone())).collect()
    }

    /// Loads parameters written by [`Network::tensors`].
    pub fn load(&self, tensors: &HashMap<String, Tensor>) -> candle_core::Result<()> {
        for (name, var) in self.all_vars() {
            let t = tensors.get(&format!("param.{name}")).ok_or_else(|| candle_core::Error::Msg(format!("checkpoint lacks parameter `{name}`")))?;
            if t.shape() != var.shape() {
                candle_core::bail!("checkpoint parameter `{name}` has shape {:?}, the model expects {:?}", t.shape(), var.shape());
            }
            var.set(t)?;
        }
        Ok(())
    }
}

/// What [`Network::dgd_batch`] returns.
pub struct DgdBatch {
    /// Gradients of every variable (decoder, dispersions, mixture) for the optimisers.
    pub grads: GradStore,
    /// d loss / d z, rows × d.
    pub z_grad: Vec<f32>,
    pub nll_sum: f64,
    pub log_pz_sum: f64,
}
