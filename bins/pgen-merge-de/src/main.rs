//! pgen-merge-de: joins per-cell-type DE tables into one table in the de_train layout.
use anyhow::Result;
use clap::Parser;
use perturbgen::io::de_table::DeTable;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(version, about = "Merge DE tables (de_train layout) into one")]
struct Args {
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    common: perturbgen_cli::CommonArgs,
}

fn main() {
    let args: Args = perturbgen_cli::parse_args();
    perturbgen_cli::main(args.common.verbose, || run(args));
}

fn run(args: Args) -> Result<()> {
    let tables = args.inputs.iter().map(|p| Ok((DeTable::read(p)?, p.clone()))).collect::<perturbgen::Result<Vec<_>>>()?;
    let merged = perturbgen::baseline::merge_tables(tables)?;
    log::info!("{} rows × {} genes", merged.n_rows(), merged.genes.len());
    merged.write(&args.out)?;
    Ok(())
}
