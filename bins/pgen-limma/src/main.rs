//! pgen-limma: the official DE recipe (edgeR TMM → voom → lmFit → contrasts → eBayes) for one
//! cell type, run in R by scripts/limma_de.R; writes signed −log10 P in the de_train layout.
use anyhow::Result;
use clap::Parser;
use perturbgen::io::id_map::IdMap;
use perturbgen::limma::{run_limma, LimmaConfig};
use perturbgen::pseudobulk::PseudoBulk;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(version, about = "Differential expression with limma for one cell type")]
struct Args {
    #[arg(long)]
    pseudobulk: PathBuf,
    #[arg(long)]
    cell_type: String,
    /// Model formula; `Rpert` is the compound factor, other terms name sample columns.
    #[arg(long, default_value = "~0+Rpert+donor_id+plate_name+row")]
    design: String,
    #[arg(long, default_value = "Dimethyl Sulfoxide")]
    negative_control: String,
    /// Keep only the pairs of this id_map (e.g. the hold-out targets).
    #[arg(long)]
    targets: Option<PathBuf>,
    #[arg(long, default_value = "Rscript")]
    rscript: PathBuf,
    #[arg(long, default_value = "scripts/limma_de.R")]
    script: PathBuf,
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    common: perturbgen::cli::CommonArgs,
}

fn main() {
    let args = Args::parse();
    perturbgen::cli::main(args.common.verbose, || run(args));
}

fn run(args: Args) -> Result<()> {
    let pb = PseudoBulk::read(&args.pseudobulk)?;
    let targets = args.targets.as_deref().map(IdMap::read).transpose()?;
    let config = LimmaConfig { rscript: args.rscript, script: args.script, design: args.design, negative_control: args.negative_control, threads: args.common.threads };
    let table = run_limma(&pb, &args.cell_type, &config, targets.as_ref(), &args.pseudobulk)?;
    log::info!("{}: {} compounds × {} genes", args.cell_type, table.n_rows(), table.genes.len());
    table.write(&args.out)?;
    Ok(())
}
