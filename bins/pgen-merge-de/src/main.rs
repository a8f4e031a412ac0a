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
    /// Leave out the rows of this compound (repeatable), e.g. the positive controls for the
    /// table the regressors fit.
    #[arg(long = "drop-compound")]
    drop_compounds: Vec<String>,
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
    let mut merged = perturbgen::baseline::merge_tables(tables)?;
    if !args.drop_compounds.is_empty() {
        let keep: Vec<usize> = (0..merged.n_rows()).filter(|&i| !args.drop_compounds.contains(&merged.keys[i].sm_name)).collect();
        log::info!("left out {} rows of {:?}", merged.n_rows() - keep.len(), args.drop_compounds);
        merged = merged.take_rows(&keep);
    }
    log::info!("{} rows × {} genes", merged.n_rows(), merged.genes.len());
    merged.write(&args.out)?;
    Ok(())
}
