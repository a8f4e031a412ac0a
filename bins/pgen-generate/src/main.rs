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
use perturbgen_models::counterfactual::{control_pools, Source};
use perturbgen_models::generate::{generate, CellSink, GenerateParams, Reference};
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
    let params = args.params.checked::<GenerateParams>()?;
    let threads = args.common.threads();
    let limma = args.limma.config(&args.params, threads)?;
    let targets = IdMap::read(&args.targets)?;
    let mut sizes = SizeTable::read(&args.sizes)?;
    if params.reference == Reference::Real {
        // The target cell types' control wells stay real: only the target groups are generated.
        sizes.rows.retain(|r| !r.observed);
    } else if !sizes.rows.iter().any(|r| r.observed) {
        anyhow::bail!("{}: generate.reference generated and generated_controls need the target cell types' control wells in the size table (pgen-sizes --negative-control)", args.sizes.display());
    }
    let real = PseudoBulk::read(&args.pseudobulk)?;
    let device = perturbgen_models::device(&args.device)?;
    let model = LoadedModel::load(&args.model, &device)?;
    if real.genes != model.meta.genes {
        anyhow::bail!("{}: genes differ from the model's ({} vs {})", args.pseudobulk.display(), real.genes.len(), model.meta.genes.len());
    }
    let n_cells: f64 = sizes.rows.iter().map(|r| r.n_cells.round()).sum();
    log::info!("{:?} model: {} groups, {n_cells} cells, emit {:?}, run {}", model.meta.config.model, sizes.rows.len(), params.emit, args.run);
    let bar = perturbgen::progress::bar(sizes.rows.len() as u64, "generating");
    let start = std::time::Instant::now();
    let seed = params.seed.wrapping_add(args.run);
    let mut cells = perturbgen::cells::Cells { obs: Default::default(), counts: perturbgen::counts::CountMatrix::new(real.genes.clone()) };
    let prefix = format!("generated-run{}", args.run);
    let pools = match params.source {
        Source::Prior => None,
        Source::Controls => {
            let (Some(counts), Some(obs)) = (&args.cells_counts, &args.cells_obs) else {
                anyhow::bail!("generate.source: controls needs the model's cells (--cells-counts, --cells-obs)");
            };
            let model_cells = perturbgen::cells::Cells::read(counts, obs)?;
            let pools = perturbgen::threads::with_threads(threads, || control_pools(&model, model_cells, &sizes, &limma.negative_control, seed, (counts, obs, &args.sizes)))??;
            for (row, key) in pools.keys.iter().enumerate().filter(|(row, _)| !sizes.rows[*row].observed) {
                log::info!("{} / {}: latents of {} {} control cells ({})", sizes.rows[row].key.cell_type, sizes.rows[row].key.sm_name, pools.latents[row].len() / pools.dim, key.cell_type, key.scope);
            }
            Some(pools)
        }
    };
    let sink = (args.out_cells.is_some() || args.out_cells_h5ad.is_some()).then(|| CellSink { cells: &mut cells, prefix: &prefix });
    let generated = perturbgen::threads::with_threads(threads, || generate(&model, &sizes, params.emit, seed, &args.sizes, pools.as_ref(), sink, &|| bar.inc(1)))??;
    bar.finish_and_clear();
    log::info!("generated {n_cells} cells × {} genes in {:.1} s", real.genes.len(), start.elapsed().as_secs_f64());
    let mut stats = match params.reference {
        Reference::Real => perturbgen::limma::de_with_predicted(&real, &generated, &targets, &limma, &args.pseudobulk)?,
        // Everything limma sees of a target cell type is generated (the other cell types' real
        // samples are not used: limma runs per cell type).
        Reference::Generated => {
            let none = PseudoBulk { genes: real.genes.clone(), ..Default::default() };
            perturbgen::limma::de_with_predicted(&none, &generated, &targets, &limma, &args.pseudobulk)?
        }
        Reference::GeneratedControls => perturbgen::limma::de_against_predicted_controls(&real, &generated, &targets, &limma, &args.pseudobulk)?,
    };
    stats.route = model.meta.config.model.name().to_string();
    let table = stats.table();
    let mut out = OutputSet::new();
    if let Some(path) = &args.out_pseudobulk {
        generated.write(&out.stage(path)?)?;
    }
    if let (Some(counts), Some(obs)) = (&args.out_cells, &args.out_cells_obs) {
        cells.write(&out.stage(counts)?, &out.stage(obs)?)?;
    }
    if let Some(path) = &args.out_cells_h5ad {
        let run = vec![("run".to_string(), ObsColumn::Int(vec![args.run as i64; cells.len()]))];
        let uns = vec![
            ("model".to_string(), UnsValue::String(stats.route.clone())),
            ("run".to_string(), UnsValue::String(args.run.to_string())),
            ("seed".to_string(), UnsValue::String(seed.to_string())),
        ];
        write_cells_h5ad(&cells, run, uns, &out.stage(path)?)?;
    }
    if let Some(path) = &args.out_de_h5ad {
        stats.write_h5ad(&out.stage(path)?)?;
    }
    table.write(&out.stage(&args.out)?)?;
    out.commit()?;
    Ok(())
}
