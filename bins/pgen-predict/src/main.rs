//! pgen-predict: a trained model applied to new targets without retraining. The size forests
//! learn from the training cells' wells and predict the new target groups (as pgen-sizes does),
//! the model generates them, and limma gives their DE against the real training samples (as
//! pgen-generate does): the same library calls as the workflow's sizes and generate jobs, so the
//! run's own targets come out byte for byte as its generate job's.
use anyhow::Result;
use clap::Parser;
use perturbgen::atomic::OutputSet;
use perturbgen::cells::Cells;
use perturbgen::io::id_map::IdMap;
use perturbgen::io::sizes::SizeTable;
use perturbgen::params::de::DeParams;
use perturbgen::params::filter::FilterParams;
use perturbgen::params::predict::PredictParams;
use perturbgen::pseudobulk::PseudoBulk;
use perturbgen_models::calibration::Calibration;
use perturbgen_models::generate::GenerateParams;
use perturbgen_models::generated_de::GenerationRun;
use perturbgen_models::loglik::LoadedModel;
use perturbgen_models::new_targets::check_targets;
use perturbgen_regress::sizes::SizesParams;
use perturbgen_regress::target_sizes::target_sizes;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(version, about = "Predict new (cell type, compound) pairs with a trained model: sizes → generated cells → pseudo-bulk → limma DE")]
struct Args {
    /// Model folder (pgen-train output: model.safetensors + model.json); default: `predict.model`.
    #[arg(long)]
    model: Option<PathBuf>,
    /// The pairs to predict: an id_map (id,cell_type,sm_name) or a CSV of cell_type,sm_name;
    /// default: `predict.targets`.
    #[arg(long)]
    targets: Option<PathBuf>,
    /// The model's training cells (the workflow's results/split/train_counts.parquet and
    /// train_obs.parquet): the size forests learn from their wells.
    #[arg(long)]
    counts: PathBuf,
    #[arg(long)]
    obs: PathBuf,
    /// The cells the model was trained and validated on (the workflow's results/filter/
    /// counts.parquet + obs.parquet), for `generate.source: controls`: the target cell types'
    /// negative-control cells; without them, those of `--counts`/`--obs` (the filter keeps
    /// every negative-control cell, so the latents are the same) ...
    #[arg(long, requires = "cells_obs")]
    cells_counts: Option<PathBuf>,
    /// ... and their obs table.
    #[arg(long, requires = "cells_counts")]
    cells_obs: Option<PathBuf>,
    /// The real training pseudo-bulk (results/pseudobulk/train.parquet): the generated samples join it.
    #[arg(long)]
    pseudobulk: PathBuf,
    /// The generative inner hold-out's pick of the settings set to `auto` (pgen-calibrate --out;
    /// the workflow's results/inner/generate/<model>/calibration.json). Needed where one is.
    #[arg(long)]
    calibration: Option<PathBuf>,
    /// Replicate run: draws with seed `generate.seed` + run.
    #[arg(long, default_value_t = 0)]
    run: u64,
    /// Compute device: cpu, or cuda[:N] with a `--features cuda` build.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// DE prediction for the targets (de_train layout: signed −log10 P per gene).
    #[arg(long)]
    out: PathBuf,
    /// Also write the prediction as AnnData: X = the --out values, layers logFC, AveExpr, t,
    /// P.Value, adj.P.Val (limma's), obs = the pairs, var = the genes, uns/route = the model's
    /// folder name.
    #[arg(long)]
    out_h5ad: Option<PathBuf>,
    /// Also write the target groups' size table (pgen-sizes layout).
    #[arg(long)]
    out_sizes: Option<PathBuf>,
    /// Also write the generated groups' pseudo-bulk (pseudo-bulk layout).
    #[arg(long)]
    out_pseudobulk: Option<PathBuf>,
    /// Also write every generated cell (needs `generate.emit: sample`): the long counts table ...
    #[arg(long, requires = "out_cells_obs")]
    out_cells: Option<PathBuf>,
    /// ... and the cells' metadata (obs layout).
    #[arg(long, requires = "out_cells")]
    out_cells_obs: Option<PathBuf>,
    /// Settings: `predict` (own), and the sections `sizes`, `generate`, `de` and
    /// `filter.drop_compounds` as the workflow's sizes and generate jobs read them (`--config
    /// config.yaml`, or `--section NAME=JSON`).
    #[command(flatten)]
    params: perturbgen_cli::ConfigArgs,
    #[command(flatten)]
    limma: perturbgen_cli::LimmaArgs,
    #[command(flatten)]
    common: perturbgen_cli::CommonArgs,
}

fn main() {
    let args: Args = perturbgen_cli::parse_args();
    perturbgen_models::limit_threads(args.common.threads());
    perturbgen_cli::main(args.common.verbose, || run(args));
}

fn run(args: Args) -> Result<()> {
    let predict = args.params.checked::<PredictParams>()?;
    let model_dir = args.model.or(predict.model).ok_or_else(|| anyhow::anyhow!("no model: give --model or predict.model"))?;
    let targets_path = args.targets.or(predict.targets).ok_or_else(|| anyhow::anyhow!("no targets: give --targets or predict.targets"))?;
    let sizes_config = args.params.section::<SizesParams>()?;
    let mut generate_params = args.params.section::<GenerateParams>()?;
    if let Some(path) = &args.calibration {
        generate_params = Calibration::read(path)?.apply(&generate_params);
    }
    let threads = args.common.threads();
    let limma = args.limma.config(&args.params, threads)?;
    // The wells that are not compound wells, as the workflow's sizes job has them: the negative
    // control's and the positive controls' (filter.drop_compounds).
    let negative_control = args.params.section::<DeParams>()?.negative_control;
    let mut exclude = vec![negative_control.clone()];
    for c in args.params.section::<FilterParams>()?.drop_compounds {
        if !exclude.contains(&c) {
            exclude.push(c);
        }
    }

    let targets = IdMap::read_pairs(&targets_path)?;
    let device = perturbgen_models::device(&args.device)?;
    let model = LoadedModel::load(&model_dir, &device)?;
    let cells = Cells::read(&args.counts, &args.obs)?;
    check_targets(&model.meta, &cells, &args.obs, &targets, &targets_path)?;
    log::info!("{}: {} target pairs for the model in {}", targets_path.display(), targets.rows.len(), model_dir.display());
    let sizes = target_sizes(&cells, &targets, &targets_path, &exclude, Some(&negative_control), &sizes_config, threads)?;
    drop(cells);
    let real = PseudoBulk::read(&args.pseudobulk)?;

    let mut out = OutputSet::new();
    // The size table goes to the generation as the workflow hands it over: written, read back.
    let scratch = tempfile::tempdir()?;
    let sizes_path = args.out_sizes.clone().unwrap_or_else(|| scratch.path().join("sizes.csv"));
    let staged_sizes = if args.out_sizes.is_some() { out.stage(&sizes_path)? } else { sizes_path.clone() };
    sizes.table.write(&staged_sizes)?;
    let generated = GenerationRun {
        model: &model,
        sizes: SizeTable::read(&staged_sizes)?,
        sizes_path: &sizes_path,
        real: &real,
        real_path: &args.pseudobulk,
        targets: &targets,
        model_cells: Some(args.cells_counts.as_deref().zip(args.cells_obs.as_deref()).unwrap_or((&args.counts, &args.obs))),
        params: &generate_params,
        limma: &limma,
        run: args.run,
        keep_cells: args.out_cells.is_some(),
        threads,
    }
    .run()?;
    let mut stats = generated.stats;
    stats.route = model_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let table = stats.table();
    if let Some(path) = &args.out_h5ad {
        stats.write_h5ad(&out.stage(path)?)?;
    }
    if let Some(path) = &args.out_pseudobulk {
        generated.pseudobulk.write(&out.stage(path)?)?;
    }
    if let (Some(counts), Some(obs), Some(cells)) = (&args.out_cells, &args.out_cells_obs, &generated.cells) {
        cells.write(&out.stage(counts)?, &out.stage(obs)?)?;
    }
    table.write(&out.stage(&args.out)?)?;
    out.commit()?;
    log::info!("{}: {} pairs × {} genes", args.out.display(), table.n_rows(), table.genes.len());
    Ok(())
}
