//! pgen-train: trains the conditional DGD or NB-VAE (candle) on the training cells and writes
//! the best epoch's checkpoint, a resume checkpoint, the per-epoch history and its plots.
use anyhow::{Context, Result};
use clap::Parser;
use perturbgen::cells::Cells;
use perturbgen::model::config::{ModelKind, TrainConfig};
use perturbgen::model::data::{Covariates, ModelData, Scale};
use perturbgen::model::nb_loss::Dispersion;
use perturbgen::model::train::{train, Resume, TrainRun, Trainer};
use perturbgen::model::{self, adam::AdamParams};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(version, about = "Train the conditional DGD or NB-VAE on single-cell counts")]
// A flag given twice takes its last value, so a sweep can append overrides to fixed settings.
#[command(args_override_self = true)]
struct Args {
    /// dgd or nbvae.
    #[arg(long)]
    model: String,
    /// Training cells' counts and obs (the split stage's train_counts / train_obs).
    #[arg(long)]
    counts: PathBuf,
    #[arg(long)]
    obs: PathBuf,
    /// obs_ids of the validation cells (one per line; they are taken out of training).
    #[arg(long)]
    validation: PathBuf,
    /// Output folder: model.safetensors/.json (best epoch), last.* (resume), history.csv,
    /// loss.png, latent.png.
    #[arg(long)]
    out_dir: PathBuf,
    /// Continue from out_dir/last.*: `yes` (same settings and cells required), `auto` (continue
    /// if they match, else start from scratch), `no`.
    #[arg(long, default_value = "no", num_args = 0..=1, default_missing_value = "yes")]
    resume: String,
    /// cpu, or cuda[:N] with the `cuda` feature.
    #[arg(long, default_value = "cpu")]
    device: String,
    #[arg(long)]
    latent_dim: Option<usize>,
    /// Decoder hidden sizes, input side first, comma-separated (default 256,1024).
    #[arg(long, value_delimiter = ',')]
    decoder_hidden: Option<Vec<usize>>,
    /// VAE encoder hidden sizes (default 1024,256).
    #[arg(long, value_delimiter = ',')]
    encoder_hidden: Option<Vec<usize>>,
    /// Obs columns to condition on (repeatable; default cell_type, plate_name, well).
    #[arg(long = "covariate")]
    covariates: Vec<String>,
    /// Per-cell scale M of the NB mean: max, sum or mean of the cell's counts.
    #[arg(long)]
    scale: Option<String>,
    /// r = exp(θ) ("exp") or exp(θ) + 1 ("exp_plus_one").
    #[arg(long)]
    dispersion: Option<String>,
    #[arg(long)]
    dispersion_init: Option<f64>,
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long)]
    max_epochs: Option<usize>,
    #[arg(long)]
    min_epochs: Option<usize>,
    #[arg(long)]
    patience: Option<usize>,
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long)]
    decoder_lr: Option<f64>,
    /// beta1,beta2
    #[arg(long, value_delimiter = ',')]
    decoder_betas: Option<Vec<f64>>,
    #[arg(long)]
    latent_lr: Option<f64>,
    #[arg(long, value_delimiter = ',')]
    latent_betas: Option<Vec<f64>>,
    #[arg(long)]
    mixture_lr: Option<f64>,
    #[arg(long, value_delimiter = ',')]
    mixture_betas: Option<Vec<f64>>,
    /// Mixture components (DGD).
    #[arg(long)]
    components: Option<usize>,
    #[arg(long)]
    softball_radius: Option<f64>,
    #[arg(long)]
    softball_sharpness: Option<f64>,
    #[arg(long)]
    sd_init: Option<f64>,
    #[arg(long)]
    logprec_prior_sd: Option<f64>,
    #[arg(long)]
    dirichlet_alpha: Option<f64>,
    /// VAE KL warm-up epochs.
    #[arg(long)]
    kl_warmup: Option<usize>,
    #[arg(long)]
    checkpoint_every: Option<usize>,
    /// Stop after this many epochs as if interrupted (the resume checkpoint is written).
    #[arg(long, hide = true)]
    stop_after: Option<usize>,
    /// Benchmark: run this many training steps on the first batch-size cells, print cells/s.
    #[arg(long)]
    bench_steps: Option<usize>,
    #[command(flatten)]
    common: perturbgen::cli::CommonArgs,
}

fn main() {
    let args = Args::parse();
    model::limit_threads(args.common.threads);
    model::keep_freed_memory();
    perturbgen::cli::main(args.common.verbose, || run(args));
}

fn betas(name: &str, v: &Option<Vec<f64>>, adam: &mut AdamParams) -> Result<()> {
    if let Some(b) = v {
        anyhow::ensure!(b.len() == 2, "--{name}-betas takes two numbers, beta1,beta2 (got {})", b.len());
        (adam.beta1, adam.beta2) = (b[0], b[1]);
    }
    Ok(())
}

fn config(args: &Args) -> Result<TrainConfig> {
    let mut c = TrainConfig::defaults(ModelKind::parse(&args.model)?);
    macro_rules! set {
        ($($field:ident).+ = $value:expr) => {
            if let Some(v) = $value.clone() {
                c.$($field).+ = v;
            }
        };
    }
    set!(latent_dim = args.latent_dim);
    set!(decoder_hidden = args.decoder_hidden);
    set!(encoder_hidden = args.encoder_hidden);
    if !args.covariates.is_empty() {
        c.covariates = args.covariates.clone();
    }
    if let Some(s) = &args.scale {
        c.scale = Scale::parse(s).with_context(|| format!("--scale `{s}`: expected max, sum or mean"))?;
    }
    if let Some(s) = &args.dispersion {
        c.dispersion = Dispersion::parse(s).with_context(|| format!("--dispersion `{s}`: expected exp or exp_plus_one"))?;
    }
    set!(dispersion_init = args.dispersion_init);
    set!(batch_size = args.batch_size);
    set!(max_epochs = args.max_epochs);
    set!(min_epochs = args.min_epochs);
    set!(patience = args.patience);
    set!(seed = args.seed);
    set!(decoder_adam.lr = args.decoder_lr);
    set!(latent_adam.lr = args.latent_lr);
    set!(mixture_adam.lr = args.mixture_lr);
    betas("decoder", &args.decoder_betas, &mut c.decoder_adam)?;
    betas("latent", &args.latent_betas, &mut c.latent_adam)?;
    betas("mixture", &args.mixture_betas, &mut c.mixture_adam)?;
    set!(gmm.components = args.components);
    set!(gmm.softball_radius = args.softball_radius);
    set!(gmm.softball_sharpness = args.softball_sharpness);
    set!(gmm.sd_init = args.sd_init);
    set!(gmm.logprec_prior_sd = args.logprec_prior_sd);
    set!(gmm.dirichlet_alpha = args.dirichlet_alpha);
    set!(kl_warmup = args.kl_warmup);
    set!(checkpoint_every = args.checkpoint_every);
    c.validate()?;
    Ok(c)
}

fn run(args: Args) -> Result<()> {
    let config = config(&args)?;
    let resume = match args.resume.as_str() {
        "yes" => Resume::Require,
        "auto" => Resume::IfCompatible,
        "no" => Resume::No,
        other => anyhow::bail!("--resume `{other}`: expected yes, auto or no"),
    };
    let device = model::device(&args.device)?;
    let cells = Cells::read(&args.counts, &args.obs)?;
    let split = model::data::split_validation(cells, &args.validation)?;
    let covariates = Covariates::fit(&split.train.obs, &config.covariates)?;
    let train_ids = split.train.obs.obs_id.clone();
    let val_ids = split.val.obs.obs_id.clone();
    let genes = split.train.counts.genes.clone();
    log::info!("{} training and {} validation cells × {} genes; {} covariate columns", train_ids.len(), val_ids.len(), genes.len(), covariates.width());
    let train_data = ModelData::new(split.train, config.scale, &covariates, &args.obs)?;
    let val_data = ModelData::new(split.val, config.scale, &covariates, &args.obs)?;
    let threads = args.common.threads;
    perturbgen::threads::with_threads(threads, || -> Result<()> {
        let mut trainer = Trainer::new(config.clone(), covariates, genes, train_ids, val_ids, &device)?;
        if let Some(steps) = args.bench_steps {
            let seconds = trainer.bench(&train_data, steps)?;
            let cells = config.batch_size.min(train_data.len());
            let per_step: Vec<String> = seconds.iter().map(|s| format!("{s:.3}")).collect();
            let steady = if seconds.len() > 1 { &seconds[1..] } else { &seconds[..] };
            let mean = steady.iter().sum::<f64>() / steady.len().max(1) as f64;
            println!("{{\"steps\": {steps}, \"batch\": {cells}, \"threads\": {threads}, \"seconds_per_step\": {mean:.4}, \"cells_per_second\": {:.1}, \"step_seconds\": [{}]}}", cells as f64 / mean, per_step.join(", "));
            return Ok(());
        }
        let run = TrainRun { train: &train_data, val: &val_data, out_dir: args.out_dir.clone(), resume, stop_after: args.stop_after };
        let outcome = train(&mut trainer, &run)?;
        log::info!(
            "{} epochs; best epoch {} (validation loss {:.4}){}",
            outcome.epochs_run,
            outcome.best_epoch,
            outcome.best_val_loss,
            if outcome.stopped_early { ", stopped early" } else { "" }
        );
        let interrupted = args.stop_after == Some(outcome.epochs_run) && !outcome.stopped_early && outcome.epochs_run < config.max_epochs;
        if !interrupted {
            perturbgen::model::report::write_report(&args.out_dir, &trainer, &train_data)?;
        }
        Ok(())
    })??;
    Ok(())
}
