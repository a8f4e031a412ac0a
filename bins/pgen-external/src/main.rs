//! pgen-external: another model's generated cells (an .h5ad: counts, obs with cell type,
//! compound, donor, plate and well) summed into pseudo-bulk samples, which join the target cell
//! types' real samples in limma as pgen-generate's `reference: real` does → the targets' DE.
use anyhow::Result;
use clap::Parser;
use perturbgen::atomic::OutputSet;
use perturbgen::external::{external_pseudobulk, ExternalCells};
use perturbgen::ingest::CountSource;
use perturbgen::io::id_map::IdMap;
use perturbgen::io::obs::ColumnMap;
use perturbgen::params::external::ExternalParams;
use perturbgen::pseudobulk::PseudoBulk;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(version, about = "Score another model's generated cells: .h5ad → pseudo-bulk → limma DE of the targets")]
struct Args {
    /// The generated cells (.h5ad); default: the `external` section's `cells`.
    #[arg(long)]
    cells: Option<PathBuf>,
    /// The real training pseudo-bulk (pgen-pseudobulk output): its genes are the ones the cells
    /// must have, its samples of the target cell types join the generated ones in limma.
    #[arg(long)]
    pseudobulk: PathBuf,
    /// Target pairs (id_map layout).
    #[arg(long)]
    targets: PathBuf,
    /// DE prediction for the targets (de_train layout).
    #[arg(long)]
    out: PathBuf,
    /// Also write the generated cells' pseudo-bulk (pseudo-bulk layout).
    #[arg(long)]
    out_pseudobulk: Option<PathBuf>,
    /// Also write limma's statistics of the prediction (logFC, AveExpr, t, P.Value, adj.P.Val)
    /// as AnnData, uns/route = external.name (pgen-anndata --de).
    #[arg(long)]
    out_de_h5ad: Option<PathBuf>,
    /// The `external` section (counts, obs column names); `de` through --section/--config.
    #[command(flatten)]
    params: perturbgen_cli::ConfigArgs,
    #[command(flatten)]
    limma: perturbgen_cli::LimmaArgs,
    #[command(flatten)]
    common: perturbgen_cli::CommonArgs,
}

fn main() {
    let args: Args = perturbgen_cli::parse_args();
    perturbgen_cli::main(args.common.verbose, || run(args));
}

fn run(args: Args) -> Result<()> {
    let params = args.params.checked::<ExternalParams>()?;
    let threads = args.common.threads();
    let limma = args.limma.config(&args.params, threads)?;
    let cells = args.cells.clone().or_else(|| params.cells.clone()).ok_or_else(|| anyhow::anyhow!("no cells: give --cells or external.cells"))?;
    let source = CountSource::parse(&params.counts)?;
    let columns = ColumnMap::parse(&params.column_flags())?;
    let targets = IdMap::read(&args.targets)?;
    let real = PseudoBulk::read(&args.pseudobulk)?;
    let external = ExternalCells { path: &cells, source: &source, columns: &columns };
    let generated = perturbgen::threads::with_threads(threads, || external_pseudobulk(&external, &real, &targets))??;
    let mut stats = perturbgen::limma::de_with_predicted(&real, &generated, &targets, &limma, &args.pseudobulk)?;
    stats.route.clone_from(&params.name);
    let table = stats.table();
    let mut out = OutputSet::new();
    if let Some(path) = &args.out_pseudobulk {
        generated.write(&out.stage(path)?)?;
    }
    if let Some(path) = &args.out_de_h5ad {
        stats.write_h5ad(&out.stage(path)?)?;
    }
    table.write(&out.stage(&args.out)?)?;
    out.commit()?;
    log::info!("{}: {} target pairs × {} genes", args.out.display(), table.n_rows(), table.genes.len());
    Ok(())
}
