//! pgen-ingest: validates Kaggle-layout counts and metadata and writes the pipeline's cached
//! count matrix (`counts.parquet`) and obs table (`obs.parquet`).
use anyhow::Result;
use clap::Parser;
use perturbgen::ingest::{ingest, CellsInput, CountSource, IngestInputs, IngestOutputs};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(version, about = "Validate and cache single-cell counts given in the Kaggle layout")]
struct Args {
    /// Long count table (adata_train.parquet layout: obs_id, gene, count).
    #[arg(long, required_unless_present = "h5ad", requires = "obs")]
    counts: Option<PathBuf>,
    /// Cell metadata (adata_obs_meta.csv, or an obs.parquet).
    #[arg(long, required_unless_present = "h5ad", requires = "counts")]
    obs: Option<PathBuf>,
    /// An AnnData file instead of --counts/--obs: its obs dataframe and the counts of
    /// --h5ad-counts.
    #[arg(long, conflicts_with_all = ["counts", "obs"])]
    h5ad: Option<PathBuf>,
    /// Where the h5ad's raw counts are: X, raw (raw/X) or layers/<name>.
    #[arg(long, default_value = "X")]
    h5ad_counts: String,
    /// (obs_id, gene) pairs to drop (adata_excluded_ids.csv).
    #[arg(long)]
    excluded: Option<PathBuf>,
    /// Gene order: a text file with one gene per line, or a de_train.parquet (its gene
    /// columns). Default: the order stored in the counts file, else genes sorted by name.
    #[arg(long)]
    genes: Option<PathBuf>,
    /// The study's name for an obs column: NAME=COLUMN (repeatable), NAME one of the Kaggle obs
    /// columns, e.g. `--column cell_type=celltype --column sm_name=condition`.
    #[arg(long = "column", value_name = "NAME=COLUMN")]
    columns: Vec<String>,
    #[arg(long)]
    out_counts: PathBuf,
    #[arg(long)]
    out_obs: PathBuf,
    /// Summary JSON (cells, genes, non-zeros, memory, timing).
    #[arg(long)]
    summary: Option<PathBuf>,
    /// QC plot (PNG).
    #[arg(long)]
    qc_plot: Option<PathBuf>,
    #[command(flatten)]
    common: perturbgen_cli::CommonArgs,
}

fn main() {
    let args: Args = perturbgen_cli::parse_args();
    perturbgen_cli::main(args.common.verbose, || run(args));
}

fn run(args: Args) -> Result<()> {
    let columns = perturbgen::io::obs::ColumnMap::parse(&args.columns)?;
    let cells = match (args.h5ad, args.counts, args.obs) {
        (Some(path), _, _) => CellsInput::H5ad { path, source: CountSource::parse(&args.h5ad_counts)? },
        (None, Some(counts), Some(obs)) => CellsInput::Kaggle { counts, obs },
        _ => anyhow::bail!("give --counts and --obs, or --h5ad"),
    };
    let inputs = IngestInputs { cells, excluded: args.excluded, genes: args.genes, columns };
    let outputs = IngestOutputs { counts: args.out_counts, obs: args.out_obs, summary: args.summary, qc_plot: args.qc_plot };
    perturbgen::threads::with_threads(args.common.threads(), || ingest(&inputs, &outputs))??;
    Ok(())
}
