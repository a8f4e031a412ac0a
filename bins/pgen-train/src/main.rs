//! pgen-train: trains the conditional DGD or NB-VAE (candle) on the training cells and writes
//! the best epoch's checkpoint, a resume checkpoint, the per-epoch history and its plots.
use anyhow::Result;
use clap::Parser;
use perturbgen::cells::Cells;
use perturbgen_models::config::{ModelKind, TrainSection};
use perturbgen_models::data::{Covariates, ModelData};
use perturbgen_models::train::{train, Resume, TrainRun, Trainer};
use perturbgen_models as model;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(version, about = "Train the conditional DGD or NB-VAE on single-cell counts")]
// A flag given twice takes its last value (`--set` accumulates; the last of a key wins).
#[command(args_override_self = true)]
struct Args {
    #[arg(long, value_enum)]
    model: ModelKind,
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
    #[arg(long, value_enum, default_value = "no", num_args = 0..=1, default_missing_value = "yes")]
    resume: ResumeArg,
    /// Model settings: the `train` section (`common`, then `<model>`; see
    /// `perturbgen_models::config::ModelParams`), e.g. `--set dgd.latent_dim=8`, `--set device=cuda`.
    #[command(flatten)]
    params: perturbgen_cli::ConfigArgs,
    /// Stop after this many epochs as if interrupted (the resume checkpoint is written).
    #[arg(long, hide = true)]
    stop_after: Option<usize>,
    /// Benchmark: run this many training steps on the first batch-size cells, print cells/s.
    #[arg(long)]
    bench_steps: Option<usize>,
    #[command(flatten)]
    common: perturbgen_cli::CommonArgs,
}

fn main() {
    let args: Args = perturbgen_cli::parse_args();
    model::limit_threads(args.common.threads());
    model::keep_freed_memory();
    perturbgen_cli::main(args.common.verbose, || run(args));
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ResumeArg {
    Yes,
    Auto,
    No,
}

fn run(args: Args) -> Result<()> {
    let plan = args.params.checked::<TrainSection>()?;
    let config = plan.config(args.model).clone();
    let resume = match args.resume {
        ResumeArg::Yes => Resume::Require,
        ResumeArg::Auto => Resume::IfCompatible,
        ResumeArg::No => Resume::No,
    };
    let device = model::device(&plan.device)?;
    let matmul = model::bf16::resolve_for(plan.precision, &device)?;
    let cells = Cells::read(&args.counts, &args.obs)?;
    let split = model::data::split_validation(cells, &args.validation)?;
    let covariates = Covariates::fit(&split.train.obs, &config.covariates)?
        .with_effects(&split.train.obs, &config.effects)?
        .with_interaction(&split.train.obs, &config.interaction)?;
    let train_ids = split.train.obs.obs_id.clone();
    let val_ids = split.val.obs.obs_id.clone();
    let genes = split.train.counts.genes.clone();
    log::info!(
        "{} training and {} validation cells × {} genes; {} covariate columns, {} additive effect levels",
        train_ids.len(),
        val_ids.len(),
        genes.len(),
        covariates.width(),
        covariates.n_effect_levels()
    );
    let train_data = ModelData::new(split.train, config.scale, &covariates, &args.obs)?;
    let val_data = ModelData::new(split.val, config.scale, &covariates, &args.obs)?;
    let threads = args.common.threads();
    perturbgen::threads::with_threads(threads, || -> Result<()> {
        let mut trainer = Trainer::new(config.clone(), covariates, genes, train_ids, val_ids, &device)?;
        trainer.net.matmul = matmul;
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
            perturbgen_models::report::write_report(&args.out_dir, &trainer, &train_data)?;
        }
        Ok(())
    })??;
    Ok(())
}
