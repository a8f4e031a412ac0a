//! pgen-ingest: validates Kaggle-layout counts and metadata and writes the pipeline's cached
//! count matrix (`counts.parquet`) and obs table (`obs.parquet`).
use anyhow::Result;
use clap::Parser;
use perturbgen::ingest::{ingest, IngestInputs, IngestOutputs};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(version, about = "Validate and cache single-cell counts given in the Kaggle layout")]
struct Args {
    /// Long count table (adata_train.parquet layout: obs_id, gene, count).
    #[arg(long)]
    counts: PathBuf,
    /// Cell metadata (adata_obs_meta.csv, or an obs.parquet).
    #[arg(long)]
    obs: PathBuf,
    /// (obs_id, gene) pairs to drop (adata_excluded_ids.csv).
    #[arg(long)]
    excluded: Option<PathBuf>,
    /// Gene order: a text file with one gene per line, or a de_train.parquet (its gene
    /// columns). Default: the order stored in the counts file, else genes sorted by name.
    #[arg(long)]
    genes: Option<PathBuf>,
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
    let inputs = IngestInputs { counts: args.counts, obs: args.obs, excluded: args.excluded, genes: args.genes };
    let outputs = IngestOutputs { counts: args.out_counts, obs: args.out_obs, summary: args.summary, qc_plot: args.qc_plot };
    perturbgen::threads::with_threads(args.common.threads(), || ingest(&inputs, &outputs))??;
    Ok(())
}
