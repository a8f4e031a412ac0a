//! pgen-simulate: writes a simulated data set in the Kaggle layout (SPEC §2), with the
//! withheld test cells and the true effects under `truth/`.
use anyhow::Result;
use clap::Parser;
use perturbgen::simulate::{simulate, Preset, SimConfig};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(version, about = "Simulate a Kaggle-format single-cell perturbation data set with known effects")]
struct Args {
    /// Preset: `demo` (minutes on a laptop), `kaggle` (full scale) or `study` (a stimulation
    /// study: one plate per donor, one well per condition, five PBMC cell types).
    #[arg(long, default_value = "demo")]
    preset: Preset,
    /// Folder with the real Kaggle layout files (genes.txt, id_map.csv, de_train_rows.csv,
    /// test_pair_wells_and_sizes.csv): real gene names, compounds, wells and test pairs.
    #[arg(long)]
    layout: Option<PathBuf>,
    /// Expected number of training cells (adata_train.parquet).
    #[arg(long, value_parser = at_least_one)]
    cells: Option<usize>,
    /// Number of genes (ignored with --layout).
    #[arg(long, value_parser = at_least_one)]
    genes: Option<usize>,
    /// Number of compounds besides the controls: even (ignored with --layout); with the study
    /// preset, the number of stimuli (1 to 11).
    #[arg(long, value_parser = at_least_one)]
    compounds: Option<usize>,
    /// Number of donors (each with its own plates).
    #[arg(long, value_parser = at_least_one)]
    donors: Option<usize>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    common: perturbgen_cli::CommonArgs,
}

fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

fn main() {
    let args: Args = perturbgen_cli::parse_args();
    perturbgen_cli::main(args.common.verbose, || run(args));
}

fn run(args: Args) -> Result<()> {
    let mut config = SimConfig::preset(args.preset);
    config.seed = args.seed;
    config.layout_dir = args.layout;
    if let Some(n) = args.cells {
        config.n_train_cells = n;
    }
    if let Some(n) = args.genes {
        config.n_genes = n;
    }
    if let Some(n) = args.compounds {
        config.n_compounds = n;
    }
    if let Some(n) = args.donors {
        config.n_donors = n;
    }
    let summary = perturbgen::threads::with_threads(args.common.threads(), || simulate(&config, &args.out))??;
    log::info!(
        "median total counts {:.0}, median max count {:.0}, median non-zero genes {:.0}",
        summary.median_total_counts, summary.median_max_count, summary.median_nonzero_genes
    );
    Ok(())
}
