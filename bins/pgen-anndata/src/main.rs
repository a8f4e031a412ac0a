//! pgen-anndata: a route's prediction (de_train-layout parquet) as AnnData for scanpy and its
//! kin: obs = the target pairs with their compound's metadata, var = the genes, X = the
//! prediction's signed −log10 P; with `--de` (the limma statistics the route's stage wrote:
//! pgen-generate / pgen-external --out-de-h5ad) also layers logFC, AveExpr, t, P.Value,
//! adj.P.Val; uns = the route's name and settings.
use anyhow::{bail, Result};
use clap::Parser;
use perturbgen::io::de_stats::DeStats;
use perturbgen::io::de_table::DeTable;
use perturbgen::io::prediction_h5ad::prediction_anndata;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(version, about = "A route's prediction (parquet) as AnnData (.h5ad), with limma's statistics where the route ran limma")]
struct Args {
    /// The route's prediction (de_train layout parquet).
    #[arg(long)]
    prediction: PathBuf,
    /// limma's statistics of that prediction (.h5ad); its signed −log10 P must equal the
    /// prediction's values.
    #[arg(long)]
    de: Option<PathBuf>,
    /// The route's name (uns/route).
    #[arg(long)]
    route: String,
    /// A setting the prediction depends on, KEY=VALUE (uns/settings/KEY; repeatable; the
    /// workflow passes each config section of the route as JSON).
    #[arg(long = "setting", value_parser = parse_setting)]
    settings: Vec<(String, String)>,
    /// The .h5ad to write.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    common: perturbgen_cli::CommonArgs,
}

fn parse_setting(s: &str) -> std::result::Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() && !k.contains('/') => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("`{s}`: expected KEY=VALUE with a non-empty KEY without `/`")),
    }
}

fn main() {
    let args: Args = perturbgen_cli::parse_args();
    perturbgen_cli::main(args.common.verbose, || run(args));
}

fn run(args: Args) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    if let Some((k, _)) = args.settings.iter().find(|(k, _)| !seen.insert(k.as_str())) {
        bail!("--setting {k} given twice");
    }
    let table = DeTable::read(&args.prediction)?;
    let stats = args.de.as_ref().map(|p| DeStats::read_h5ad(p).map(|s| (s, p.clone()))).transpose()?;
    let adata = prediction_anndata(&table, stats.as_ref().map(|(s, p)| (s, p.as_path())), &args.route, &args.settings)?;
    adata.write(&args.out)?;
    log::info!(
        "{}: {} pairs × {} genes{}",
        args.out.display(),
        table.n_rows(),
        table.genes.len(),
        if stats.is_some() { ", with limma's layers" } else { "" }
    );
    Ok(())
}
