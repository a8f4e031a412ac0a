//! The training loops: DGD (decoder + mixture stepped per mini-batch, latents stepped once per
//! epoch from gradients accumulated over it, validation latents fitted with everything else
//! frozen) and NB-VAE (encoder + decoder, KL weight ramped over the warm-up), with early
//! stopping on the validation loss, best/last checkpoints and exact resume.
use super::adam::{Adam, AdamState};
use super::checkpoint::{self, CheckpointMeta, EpochLog};
use super::config::{MixturePriorWeight, ModelKind, TrainConfig};
use super::data::{Covariates, ModelData};
use super::network::Network;
use crate::error::{Error, Result};
use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// A random stream for one purpose at one point of training, so that resuming at any epoch
/// draws exactly what an uninterrupted run draws.
pub fn stream_rng(seed: u64, purpose: u64, epoch: u64, batch: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(purpose.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (epoch << 32) ^ batch);
    rng
}

const STREAM_SHUFFLE: u64 = 1;
const STREAM_EPSILON: u64 = 2;

/// The VAE's KL weight in (1-based) `epoch`: the write-up's ramp, min(1, f + (1 − f)·(epoch − 1)/W)
/// with the floor f = 1e-5·W, W = `warmup` epochs (1 from the start when W = 0). The floor is
/// what keeps the first epoch sane with raw-count encoder input: with a weight of exactly 0
/// nothing holds log σ² back, and on the demo it overflowed (KL = inf in f32) in epoch 1.
pub fn kl_weight(epoch: usize, warmup: usize) -> f64 {
    if warmup == 0 {
        return 1.0;
    }
    let floor = 1e-5 * warmup as f64;
    (floor + (1.0 - floor) * (epoch - 1) as f64 / warmup as f64).min(1.0)
}

/// Adds per-row gradients (rows × d, in `rows` order) into the per-cell accumulator.
pub fn add_rows(acc: &mut [f32], rows: &[usize], grad: &[f32], d: usize) {
    for (i, &r) in rows.iter().enumerate() {
        for j in 0..d {
            acc[r * d + j] += grad[i * d + j];
        }
    }
}

/// Per-cell latents (DGD) with their own Adam moments.
#[derive(Debug, Clone, PartialEq)]
pub struct Latents {
    pub dim: usize,
    pub values: Vec<f32>,
    pub adam: AdamState,
}

impl Latents {
    /// All latents at 0 (SPEC §4).
    pub fn zeros(n: usize, dim: usize) -> Self {
        Self { dim, values: vec![0.0; n * dim], adam: AdamState::new(n * dim) }
    }

    /// The latents of `rows`, concatenated.
    pub fn rows(&self, rows: &[usize]) -> Vec<f32> {
        rows.iter().flat_map(|&r| self.values[r * self.dim..(r + 1) * self.dim].iter().copied()).collect()
    }

    fn tensors(&self, name: &str, device: &Device) -> candle_core::Result<Vec<(String, Tensor)>> {
        let n = self.values.len() / self.dim.max(1);
        Ok(vec![
            (format!("latent.{name}"), Tensor::from_slice(&self.values, (n, self.dim), device)?),
            (format!("opt.latent.{name}.m"), Tensor::from_slice(&self.adam.m, (n, self.dim), device)?),
            (format!("opt.latent.{name}.v"), Tensor::from_slice(&self.adam.v, (n, self.dim), device)?),
            (format!("opt.latent.{name}.t"), Tensor::new(&[self.adam.t as f64], device)?),
        ])
    }

    fn load(&mut self, name: &str, tensors: &std::collections::HashMap<String, Tensor>, path: &Path) -> Result<()> {
        let get = |k: String| -> Result<Tensor> { Ok(checkpoint::tensor(tensors, &k, path)?.flatten_all()?) };
        let values = get(format!("latent.{name}"))?.to_vec1::<f32>()?;
        if values.len() != self.values.len() {
            return Err(Error::invalid(path, format!("checkpoint has {} {name} latent values, expected {}", values.len(), self.values.len())));
        }
        self.values = values;
        self.adam.m = get(format!("opt.latent.{name}.m"))?.to_vec1::<f32>()?;
        self.adam.v = get(format!("opt.latent.{name}.v"))?.to_vec1::<f32>()?;
        self.adam.t = get(format!("opt.latent.{name}.t"))?.to_vec1::<f64>()?[0] as u64;
        Ok(())
    }
}

/// Everything that changes during training.
pub struct Trainer {
    pub net: Network,
    pub opt_net: Adam,
    pub opt_mix: Option<Adam>,
    pub latents_train: Latents,
    pub latents_val: Latents,
    pub meta: CheckpointMeta,
}

/// Sums over one pass (per-cell means are taken by the caller).
#[derive(Default)]
struct PassTotals {
    recon: f64,
    prior: f64,
    cells: usize,
}

impl PassTotals {
    fn mean(&self) -> (f64, f64) {
        let n = self.cells.max(1) as f64;
        (self.recon / n, self.prior / n)
    }
}

impl Trainer {
    pub fn new(config: TrainConfig, covariates: Covariates, genes: Vec<String>, train_ids: Vec<String>, val_ids: Vec<String>, device: &Device) -> Result<Self> {
        let net = Network::new(config.clone(), covariates.clone(), genes.clone(), device)?;
        let opt_net = Adam::new(net.network_vars(), config.decoder_adam);
        let opt_mix = (config.model == ModelKind::Dgd).then(|| Adam::new(net.mixture_vars(), config.mixture_adam));
        let d = config.latent_dim;
        let (nt, nv) = if config.model == ModelKind::Dgd { (train_ids.len(), val_ids.len()) } else { (0, 0) };
        Ok(Self {
            net,
            opt_net,
            opt_mix,
            latents_train: Latents::zeros(nt, d),
            latents_val: Latents::zeros(nv, d),
            meta: CheckpointMeta {
                format: checkpoint::FORMAT.into(),
                config,
                covariates,
                genes,
                train_ids,
                val_ids,
                epoch: 0,
                best_epoch: 0,
                best_val_loss: f64::INFINITY,
                history: Vec::new(),
                tensors_sha256: String::new(),
            },
        })
    }

    /// Restores a checkpoint written by [`Trainer::save`] (the run's config must match).
    pub fn restore(&mut self, dir: &Path, stem: &str) -> Result<()> {
        let (meta, tensors) = checkpoint::load(dir, stem, &self.net.device)?;
        let (st_path, json_path) = checkpoint::paths(dir, stem);
        if meta.format != checkpoint::FORMAT {
            return Err(Error::invalid(&json_path, format!("cannot resume a `{}` checkpoint (this version trains `{}`): start over", meta.format, checkpoint::FORMAT)));
        }
        if meta.config != self.meta.config {
            let (a, b) = (serde_json::to_value(&meta.config).unwrap_or_default(), serde_json::to_value(&self.meta.config).unwrap_or_default());
            let differ: Vec<String> = match (a.as_object(), b.as_object()) {
                (Some(a), Some(b)) => a.keys().filter(|k| a.get(*k) != b.get(*k)).cloned().collect(),
                _ => vec![],
            };
            return Err(Error::invalid(&json_path, format!("cannot resume: this run's settings differ from the checkpoint's in {}", differ.join(", "))));
        }
        if meta.covariates != self.meta.covariates || meta.genes != self.meta.genes || meta.train_ids != self.meta.train_ids || meta.val_ids != self.meta.val_ids {
            return Err(Error::invalid(&json_path, "cannot resume: the training cells, genes or covariate levels differ from the checkpoint's"));
        }
        self.net.load(&tensors).map_err(|e| Error::invalid(&st_path, e.to_string()))?;
        self.opt_net.load_state("opt.net", &tensors).map_err(|e| Error::invalid(&st_path, e.to_string()))?;
        if let Some(opt) = self.opt_mix.as_mut() {
            opt.load_state("opt.mix", &tensors).map_err(|e| Error::invalid(&st_path, e.to_string()))?;
        }
        if self.meta.config.model == ModelKind::Dgd {
            self.latents_train.load("train", &tensors, &st_path)?;
            self.latents_val.load("val", &tensors, &st_path)?;
        }
        let now = self.net.matmul.name();
        if let Some(before) = meta.history.iter().rev().find_map(|h| h.precision.as_deref()).filter(|p| *p != now) {
            // Allowed (the weights and optimiser state are f32 either way), and recorded per epoch.
            log::warn!("{}: the epochs so far ran their products in {before}; this machine continues in {now}", json_path.display());
        }
        self.meta = meta;
        Ok(())
    }

    pub fn save(&self, dir: &Path, stem: &str) -> Result<()> {
        let device = &self.net.device;
        let mut tensors = self.net.tensors();
        tensors.extend(self.opt_net.state_tensors("opt.net")?);
        if let Some(opt) = &self.opt_mix {
            tensors.extend(opt.state_tensors("opt.mix")?);
        }
        if self.meta.config.model == ModelKind::Dgd {
            tensors.extend(self.latents_train.tensors("train", device)?);
            tensors.extend(self.latents_val.tensors("val", device)?);
        }
        checkpoint::save(dir, stem, &self.meta, tensors)
    }

    /// One epoch (1-based `epoch`) over `train` and `val`.
    pub fn epoch(&mut self, epoch: usize, train: &ModelData, val: &ModelData, on_batch: &dyn Fn()) -> Result<EpochLog> {
        let start = Instant::now();
        let cfg = self.meta.config.clone();
        let mut order: Vec<usize> = (0..train.len()).collect();
        order.shuffle(&mut stream_rng(cfg.seed, STREAM_SHUFFLE, epoch as u64, 0));
        let val_order: Vec<usize> = (0..val.len()).collect();
        let (t, v, kl_weight) = match cfg.model {
            ModelKind::Dgd => {
                let t = self.dgd_pass(train, &order, false, on_batch)?;
                let v = self.dgd_pass(val, &val_order, true, on_batch)?;
                (t, v, 1.0)
            }
            ModelKind::Nbvae => {
                let w = kl_weight(epoch, cfg.kl_warmup);
                let t = self.vae_pass(train, &order, Some((w, epoch)), on_batch)?;
                let v = self.vae_pass(val, &val_order, None, on_batch)?;
                (t, v, w)
            }
        };
        let ((train_recon, train_prior), (val_recon, val_prior)) = (t.mean(), v.mean());
        let log = EpochLog { epoch, train_recon, train_prior, val_recon, val_prior, val_loss: val_recon + val_prior, kl_weight, seconds: start.elapsed().as_secs_f64(), precision: Some(self.net.matmul.name().to_string()) };
        // Every logged number must be finite (the history is stored as JSON, which has no inf).
        if ![log.train_recon, log.train_prior, log.val_recon, log.val_prior].iter().all(|v| v.is_finite()) {
            return Err(Error::Diverged(format!(
                "epoch {epoch}: the loss is not finite (train {train_recon} + {train_prior}, validation {val_recon} + {val_prior}); lower the learning rates"
            )));
        }
        Ok(log)
    }

    /// DGD: one pass. Training (`frozen` false) steps decoder and mixture per batch and the
    /// training latents once at the end; validation steps only the validation latents.
    fn dgd_pass(&mut self, data: &ModelData, order: &[usize], frozen: bool, on_batch: &dyn Fn()) -> Result<PassTotals> {
        let cfg = &self.meta.config;
        let d = cfg.latent_dim;
        let n_total = data.len().max(1) as f64;
        let mut acc = vec![0f32; data.len() * d];
        let mut totals = PassTotals::default();
        for rows in order.chunks(cfg.batch_size) {
            let latents = if frozen { &self.latents_val } else { &self.latents_train };
            // Training: the mixture's own log-prior, once per cell of the batch (the write-up's
            // −gmm(z).sum()) or once per epoch, spread over the batches by their cells.
            let prior_weight = (!frozen).then(|| match cfg.mixture_prior_weight {
                MixturePriorWeight::PerCell => rows.len() as f64,
                MixturePriorWeight::PerEpoch => rows.len() as f64 / n_total,
            });
            let b = self.net.dgd_batch(data, rows, latents.rows(rows), prior_weight)?;
            if !frozen {
                self.opt_net.step(&b.grads)?;
                if let Some(opt) = self.opt_mix.as_mut() {
                    opt.step(&b.grads)?;
                }
            }
            add_rows(&mut acc, rows, &b.z_grad, d);
            totals.recon += b.nll_sum;
            totals.prior -= b.log_pz_sum;
            totals.cells += rows.len();
            on_batch();
        }
        let latents = if frozen { &mut self.latents_val } else { &mut self.latents_train };
        if !latents.values.is_empty() {
            latents.adam.step(&cfg.latent_adam, &mut latents.values, &acc);
        }
        Ok(totals)
    }

    /// VAE: one pass; `train` = Some((KL weight, epoch)) trains with reparameterised samples,
    /// None evaluates at the encoder mean with KL weight 1.
    fn vae_pass(&mut self, data: &ModelData, order: &[usize], train: Option<(f64, usize)>, on_batch: &dyn Fn()) -> Result<PassTotals> {
        let cfg = self.meta.config.clone();
        let d = cfg.latent_dim;
        let mut totals = PassTotals::default();
        for (b, rows) in order.chunks(cfg.batch_size).enumerate() {
            let batch = Arc::new(data.batch(rows));
            let c = data.conditioning(rows, &self.net.device)?;
            // Training: the big layers' weight gradients come back outside autograd's store
            // (crate::handed_grads) where the encoder's first layer is the sparse product and
            // where the decoder's last layer runs with the NB op.
            let handed = train.map(|_| crate::handed_grads::HandedGrads::default());
            let (mu, logvar) = self.net.encode_batch_with(&batch, &c.onehot, handed.as_ref())?;
            let kl = ((mu.sqr()? + logvar.exp()?)? - 1.0)?.sub(&logvar)?.sum(1)?.affine(0.5, 0.0)?;
            let z = match train {
                Some((_, epoch)) => {
                    let mut rng = stream_rng(cfg.seed, STREAM_EPSILON, epoch as u64, b as u64);
                    let eps: Vec<f32> = (0..rows.len() * d).map(|_| StandardNormal.sample(&mut rng)).collect();
                    let eps = Tensor::from_vec(eps, (rows.len(), d), &self.net.device)?;
                    (&mu + (logvar.affine(0.5, 0.0)?.exp()? * eps)?)?
                }
                None => mu.clone(),
            };
            let nll = self.net.decode_nll(&z, &c, batch, train.is_some(), handed.as_ref())?;
            let (nll_sum, kl_sum) = (nll.sum_all()?, kl.sum_all()?);
            if let Some((w, _)) = train {
                // Divided by the configured batch size (as the DGD's): the write-up sums.
                let mut loss = (&nll_sum + (&kl_sum * w)?)?;
                if let Some(penalty) = self.net.interaction_penalty(rows.len())? {
                    loss = (loss + penalty)?;
                }
                let loss = (loss / cfg.batch_size as f64)?;
                let mut grads = loss.backward()?;
                if let Some(handed) = &handed {
                    handed.move_into(&mut grads)?;
                }
                self.opt_net.step(&grads)?;
            }
            // Reported sums in f64: early in training with raw-count input a batch's KL can
            // exceed f32's range while every cell's is finite (and so are the gradients).
            totals.recon += nll.to_dtype(candle_core::DType::F64)?.sum_all()?.to_scalar::<f64>()?;
            totals.prior += kl.to_dtype(candle_core::DType::F64)?.sum_all()?.to_scalar::<f64>()?;
            totals.cells += rows.len();
            on_batch();
        }
        Ok(totals)
    }
}

impl Trainer {
    /// Benchmark: `steps` training steps on the first batch of `data` (decoder, dispersion and
    /// mixture/encoder updated every step); the wall time of each step in seconds.
    pub fn bench(&mut self, data: &ModelData, steps: usize) -> Result<Vec<f64>> {
        let rows: Vec<usize> = (0..self.meta.config.batch_size.min(data.len())).collect();
        let mut seconds = Vec::with_capacity(steps);
        for step in 0..steps {
            let start = Instant::now();
            match self.meta.config.model {
                ModelKind::Dgd => {
                    self.dgd_pass(data, &rows, false, &|| ())?;
                }
                ModelKind::Nbvae => {
                    self.vae_pass(data, &rows, Some((1.0, step + 1)), &|| ())?;
                }
            }
            seconds.push(start.elapsed().as_secs_f64());
        }
        Ok(seconds)
    }
}

/// What `train` leaves in the output folder.
pub struct TrainOutcome {
    pub epochs_run: usize,
    pub best_epoch: usize,
    pub best_val_loss: f64,
    pub stopped_early: bool,
}

/// What to do with an existing `last.*` checkpoint in the output folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Start from scratch (overwriting it).
    No,
    /// Continue from it; a checkpoint of other settings or cells is an error.
    Require,
    /// Continue from it when it was written with the same settings and cells, else start from
    /// scratch (what the workflow uses: a rerun after a cluster time-out continues, a rerun
    /// after a config change starts over).
    IfCompatible,
}

pub struct TrainRun<'a> {
    pub train: &'a ModelData,
    pub val: &'a ModelData,
    pub out_dir: PathBuf,
    pub resume: Resume,
    /// Stop (as if killed, after a checkpoint) once this many epochs are complete: for tests.
    pub stop_after: Option<usize>,
}

/// Wall-clock time of this process's epochs, for the log's elapsed time and ETA.
struct EpochClock {
    start: std::time::Instant,
    first_epoch: usize,
}

impl EpochClock {
    /// Before the epoch after `done` (epochs a resumed run did before do not count).
    fn start(done: usize) -> Self {
        Self { start: std::time::Instant::now(), first_epoch: done + 1 }
    }

    /// `elapsed H:MM:SS, ETA H:MM:SS` after `epoch` of `max_epochs`: the mean epoch time of this
    /// process times the epochs left to `max_epochs` (early stopping can only end sooner).
    fn progress(&self, epoch: usize, max_epochs: usize) -> String {
        let elapsed = self.start.elapsed().as_secs_f64();
        let per_epoch = elapsed / (epoch + 1 - self.first_epoch).max(1) as f64;
        let left = per_epoch * max_epochs.saturating_sub(epoch) as f64;
        format!("elapsed {}, ETA {} (at most)", hms(elapsed), hms(left))
    }
}

/// Seconds as `H:MM:SS`.
fn hms(seconds: f64) -> String {
    let s = seconds.round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// A fresh trainer of the same settings, cells and matmul precision, in place of `trainer`.
fn start_over(trainer: &mut Trainer) -> Result<()> {
    let m = &trainer.meta;
    let (device, matmul) = (trainer.net.device.clone(), trainer.net.matmul);
    *trainer = Trainer::new(m.config.clone(), m.covariates.clone(), m.genes.clone(), m.train_ids.clone(), m.val_ids.clone(), &device)?;
    trainer.net.matmul = matmul;
    Ok(())
}

/// Trains to `max_epochs` or early stopping; `model.*` is the best epoch (written at the end, from
/// `best.*`), `last.*` the resume point.
pub fn train(trainer: &mut Trainer, run: &TrainRun<'_>) -> Result<TrainOutcome> {
    let cfg = trainer.meta.config.clone();
    let (_, last_json) = checkpoint::paths(&run.out_dir, "last");
    match run.resume {
        Resume::No => {}
        _ if !last_json.exists() => log::warn!("no checkpoint to resume in {}, starting from scratch", run.out_dir.display()),
        Resume::Require => trainer.restore(&run.out_dir, "last")?,
        Resume::IfCompatible => {
            if let Err(e) = trainer.restore(&run.out_dir, "last") {
                log::warn!("not resuming ({e}); starting from scratch");
                // A restore that failed half-way may have loaded some tensors: start clean.
                start_over(trainer)?;
            }
        }
    }
    if trainer.meta.epoch > 0 && !checkpoint::paths(&run.out_dir, "best").0.exists() {
        // A checkpoint of an earlier version, which kept the best epoch only as model.*: when
        // the resume point is the best epoch it is its own best; otherwise it cannot be resumed.
        if trainer.meta.best_epoch == trainer.meta.epoch {
            trainer.save(&run.out_dir, "best")?;
        } else {
            let why = format!(
                "cannot resume: the best epoch ({}) is not kept apart from the resume point (epoch {}; a checkpoint of an earlier version)",
                trainer.meta.best_epoch, trainer.meta.epoch
            );
            if matches!(run.resume, Resume::Require) {
                return Err(Error::invalid(&last_json, why));
            }
            log::warn!("not resuming ({why}); starting from scratch");
            start_over(trainer)?;
        }
    }
    if trainer.meta.epoch > 0 {
        log::info!("resuming after epoch {} (best so far: epoch {})", trainer.meta.epoch, trainer.meta.best_epoch);
    }
    let batches = run.train.len().div_ceil(cfg.batch_size) + run.val.len().div_ceil(cfg.batch_size);
    let mut stopped_early = false;
    let clock = EpochClock::start(trainer.meta.epoch);
    loop {
        let (done, best) = (trainer.meta.epoch, trainer.meta.best_epoch);
        if done >= cfg.max_epochs || (done >= cfg.min_epochs && done > 0 && done - best >= cfg.patience) {
            break;
        }
        let epoch = trainer.meta.epoch + 1;
        let bar = perturbgen::progress::bar(batches as u64, &format!("epoch {epoch}/{}", cfg.max_epochs));
        let log = trainer.epoch(epoch, run.train, run.val, &|| bar.inc(1))?;
        bar.finish_and_clear();
        log::info!(
            "epoch {epoch}/{}: train recon {:.3} prior {:.3} | val recon {:.3} prior {:.3} | {:.1} s, {}",
            cfg.max_epochs, log.train_recon, log.train_prior, log.val_recon, log.val_prior, log.seconds, clock.progress(epoch, cfg.max_epochs)
        );
        trainer.meta.epoch = epoch;
        let improved = log.val_loss < trainer.meta.best_val_loss;
        trainer.meta.history.push(log);
        if improved {
            trainer.meta.best_val_loss = trainer.meta.history.last().map(|l| l.val_loss).unwrap_or(f64::INFINITY);
            trainer.meta.best_epoch = epoch;
            trainer.save(&run.out_dir, "best")?;
        }
        let stop = epoch >= cfg.min_epochs && epoch - trainer.meta.best_epoch >= cfg.patience;
        let done = stop || epoch == cfg.max_epochs;
        if done || epoch % cfg.checkpoint_every == 0 || run.stop_after == Some(epoch) {
            trainer.save(&run.out_dir, "last")?;
        }
        // Hours-long runs are watched through these: rewritten (each all or nothing) after every
        // epoch, not only at the end.
        crate::report::write_progress(&run.out_dir, trainer)?;
        if stop {
            log::info!("early stop after epoch {epoch}: no better validation loss since epoch {}", trainer.meta.best_epoch);
            stopped_early = true;
            break;
        }
        if run.stop_after == Some(epoch) {
            return Ok(TrainOutcome { epochs_run: epoch, best_epoch: trainer.meta.best_epoch, best_val_loss: trainer.meta.best_val_loss, stopped_early });
        }
    }
    // The best epoch is kept as best.* while training and published as model.* once training is
    // over: a workflow manager deletes a rerun job's outputs (model.*) before it starts, and a
    // resumed run must still be able to hand in the best epoch it found before the interruption.
    checkpoint::publish(&run.out_dir, "best", "model")?;
    Ok(TrainOutcome { epochs_run: trainer.meta.epoch, best_epoch: trainer.meta.best_epoch, best_val_loss: trainer.meta.best_val_loss, stopped_early })
}
