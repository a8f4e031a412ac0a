//! pgen-merge-de: joins per-cell-type DE tables into one table in the de_train layout, or
//! per-cell-type limma .h5ad files (pgen-limma --out-h5ad) into one .h5ad with the same rows in
//! the same order.
use anyhow::{bail, Result};
use clap::Parser;
use perturbgen::io::de_stats::DeStats;
use perturbgen::io::de_table::DeTable;
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(version, about = "Merge DE tables (de_train layout parquet, or limma .h5ad) into one")]
struct Args {
    /// Parquet tables, or .h5ad files (all of one kind).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Leave out the rows of this compound (repeatable), e.g. the positive controls for the
    /// table the regressors fit.
    #[arg(long = "drop-compound")]
    drop_compounds: Vec<String>,
    /// The merged table in the de_train layout (parquet).
    #[arg(long, required_unless_present = "out_h5ad")]
    out: Option<PathBuf>,
    /// The merged .h5ad (inputs must be .h5ad).
    #[arg(long)]
    out_h5ad: Option<PathBuf>,
    /// The name the merged .h5ad records in uns/route (e.g. de_train, truth); default: the
    /// inputs' own.
    #[arg(long)]
    route: Option<String>,
    #[command(flatten)]
    common: perturbgen_cli::CommonArgs,
}

fn main() {
    let args: Args = perturbgen_cli::parse_args();
    perturbgen_cli::main(args.common.verbose, || run(args));
}

fn is_h5ad(p: &Path) -> bool {
    p.extension().is_some_and(|e| e.eq_ignore_ascii_case("h5ad"))
}

fn kept_rows(keys: &[perturbgen::io::de_table::DeRowKey], drop: &[String]) -> Vec<usize> {
    (0..keys.len()).filter(|&i| !drop.contains(&keys[i].sm_name)).collect()
}

fn run(args: Args) -> Result<()> {
    let h5ad = args.inputs.iter().filter(|p| is_h5ad(p)).count();
    if h5ad != 0 && h5ad != args.inputs.len() {
        bail!("inputs mix .h5ad and parquet files: give one kind");
    }
    if h5ad > 0 {
        let tables = args.inputs.iter().map(|p| Ok((DeStats::read_h5ad(p)?, p.clone()))).collect::<perturbgen::Result<Vec<_>>>()?;
        let mut merged = DeStats::merge(tables)?;
        if let Some(route) = &args.route {
            merged.route.clone_from(route);
        }
        if !args.drop_compounds.is_empty() {
            let keep = kept_rows(&merged.keys, &args.drop_compounds);
            log::info!("left out {} rows of {:?}", merged.n_rows() - keep.len(), args.drop_compounds);
            merged = merged.take_rows(&keep);
        }
        log::info!("{} rows × {} genes", merged.n_rows(), merged.genes.len());
        if let Some(out) = &args.out {
            merged.table().write(out)?;
        }
        if let Some(out) = &args.out_h5ad {
            merged.write_h5ad(out)?;
        }
        return Ok(());
    }
    if args.out_h5ad.is_some() {
        bail!("--out-h5ad needs .h5ad inputs (pgen-limma --out-h5ad); parquet tables hold only the signed -log10 P values");
    }
    let tables = args.inputs.iter().map(|p| Ok((DeTable::read(p)?, p.clone()))).collect::<perturbgen::Result<Vec<_>>>()?;
    let mut merged = perturbgen::baseline::merge_tables(tables)?;
    if !args.drop_compounds.is_empty() {
        let keep = kept_rows(&merged.keys, &args.drop_compounds);
        log::info!("left out {} rows of {:?}", merged.n_rows() - keep.len(), args.drop_compounds);
        merged = merged.take_rows(&keep);
    }
    log::info!("{} rows × {} genes", merged.n_rows(), merged.genes.len());
    merged.write(args.out.as_deref().expect("clap requires --out without --out-h5ad"))?;
    Ok(())
}
