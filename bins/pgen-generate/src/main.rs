//! pgen-generate: cells for every target group from a trained model's prior (the size table
//! says how many and their scale), summed into pseudo-bulk samples, which join the real samples
//! of their cell types in limma → the targets' DE.
use anyhow::Result;
use clap::Parser;
use perturbgen::atomic::OutputSet;
use perturbgen::io::cells_h5ad::write_cells_h5ad;
use perturbgen::io::h5ad::{ObsColumn, UnsValue};
use perturbgen::io::id_map::IdMap;
use perturbgen::io::sizes::SizeTable;
use perturbgen::pseudobulk::PseudoBulk;
use perturbgen_models::calibration::Calibration;
use perturbgen_models::generate::GenerateParams;
use perturbgen_models::generated_de::GenerationRun;
use perturbgen_models::loglik::LoadedModel;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(version, about = "Generate the target groups' cells from a model → pseudo-bulk → limma DE")]
struct Args {
    /// Model folder (pgen-train output: model.safetensors + model.json).
    #[arg(long)]
    model: PathBuf,
    /// The target groups (pgen-sizes output).
    #[arg(long)]
    sizes: PathBuf,
    /// The real training pseudo-bulk (pgen-pseudobulk output): the generated samples join it.
    #[arg(long)]
    pseudobulk: PathBuf,
    /// Target pairs (id_map layout).
    #[arg(long)]
    targets: PathBuf,
    /// The cells the model was trained and validated on (counts, long table), for
    /// `generate.source: controls`: the target cell types' negative-control cells ...
    #[arg(long, requires = "cells_obs")]
    cells_counts: Option<PathBuf>,
    /// ... and their obs table.
    #[arg(long, requires = "cells_counts")]
    cells_obs: Option<PathBuf>,
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
    /// DE prediction for the targets (de_train layout).
    #[arg(long)]
    out: PathBuf,
    /// Also write the generated groups' pseudo-bulk (pseudo-bulk layout).
    #[arg(long)]
    out_pseudobulk: Option<PathBuf>,
    /// Also write every generated cell (needs `generate.emit: sample`): the counts as the
    /// pipeline's long table (obs_id, gene, count; what pgen-pseudobulk and pgen-train read) ...
    #[arg(long, requires = "out_cells_obs")]
    out_cells: Option<PathBuf>,
    /// ... and the cells' metadata (obs layout: their group's cell type, compound, plate, well).
    #[arg(long, requires = "out_cells")]
    out_cells_obs: Option<PathBuf>,
    /// Also write every generated cell as AnnData (needs `generate.emit: sample`): X = the
    /// counts (CSR, float32), obs = cell_type, sm_name, donor_id, plate_name, well, run.
    #[arg(long)]
    out_cells_h5ad: Option<PathBuf>,
    /// Also write limma's statistics of the prediction (logFC, AveExpr, t, P.Value, adj.P.Val)
    /// as AnnData, uns/route = `<model>` (pgen-anndata --de).
    #[arg(long)]
    out_de_h5ad: Option<PathBuf>,
    /// Generation parameters: `generate` section (emit, seed).
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
    let mut params = args.params.checked::<GenerateParams>()?;
    if let Some(path) = &args.calibration {
        params = Calibration::read(path)?.apply(&params);
    }
    let threads = args.common.threads();
    let limma = args.limma.config(&args.params, threads)?;
    let targets = IdMap::read(&args.targets)?;
    let sizes = SizeTable::read(&args.sizes)?;
    let real = PseudoBulk::read(&args.pseudobulk)?;
    let device = perturbgen_models::device(&args.device)?;
    let model = LoadedModel::load(&args.model, &device)?;
    let mut generated = GenerationRun {
        model: &model,
        sizes,
        sizes_path: &args.sizes,
        real: &real,
        real_path: &args.pseudobulk,
        targets: &targets,
        model_cells: args.cells_counts.as_deref().zip(args.cells_obs.as_deref()),
        params: &params,
        limma: &limma,
        run: args.run,
        keep_cells: args.out_cells.is_some() || args.out_cells_h5ad.is_some(),
        threads,
    }
    .run()?;
    generated.stats.route = model.meta.config.model.name().to_string();
    let mut out = OutputSet::new();
    if let Some(path) = &args.out_pseudobulk {
        generated.pseudobulk.write(&out.stage(path)?)?;
    }
    if let (Some(counts), Some(obs), Some(cells)) = (&args.out_cells, &args.out_cells_obs, &generated.cells) {
        cells.write(&out.stage(counts)?, &out.stage(obs)?)?;
    }
    if let (Some(path), Some(cells)) = (&args.out_cells_h5ad, &generated.cells) {
        let run = vec![("run".to_string(), ObsColumn::Int(vec![args.run as i64; cells.len()]))];
        let uns = vec![
            ("model".to_string(), UnsValue::String(generated.stats.route.clone())),
            ("run".to_string(), UnsValue::String(args.run.to_string())),
            ("seed".to_string(), UnsValue::String(params.seed.wrapping_add(args.run).to_string())),
        ];
        write_cells_h5ad(cells, run, uns, &out.stage(path)?)?;
    }
    if let Some(path) = &args.out_de_h5ad {
        generated.stats.write_h5ad(&out.stage(path)?)?;
    }
    generated.stats.table().write(&out.stage(&args.out)?)?;
    out.commit()?;
    Ok(())
}
