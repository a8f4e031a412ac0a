//! pgen-sizes: the size forests of the generative route — how many cells each target group
//! (target cell type × plate × well of its compound) would have, and their median scale.
use anyhow::Result;
use clap::Parser;
use perturbgen::atomic::OutputSet;
use perturbgen::cells::Cells;
use perturbgen::io::id_map::IdMap;
use perturbgen_regress::sizes::{plot_fit, SizesParams};
use perturbgen_regress::target_sizes::target_sizes;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(version, about = "Size forests: cells per target group and their median per-cell scale")]
struct Args {
    /// Training cells (counts.parquet + obs.parquet layout).
    #[arg(long)]
    counts: PathBuf,
    #[arg(long)]
    obs: PathBuf,
    /// Target pairs (id_map layout).
    #[arg(long)]
    targets: PathBuf,
    /// Compounds whose wells are not compound wells (repeat): the negative and positive controls.
    #[arg(long = "exclude-compound")]
    exclude: Vec<String>,
    /// The negative control: every cell type's wells of it are the baselines of
    /// `sizes.relative_to_controls` (required then), and the target cell types' ones are added
    /// to the table as observed rows (for `generate.reference: generated`, which generates them too).
    #[arg(long)]
    negative_control: Option<String>,
    /// The predicted target groups (CSV: group metadata, n_cells, scale).
    #[arg(long)]
    out: PathBuf,
    /// Observed vs predicted on the held-out training groups (PNG, R² in the titles).
    #[arg(long)]
    plot: PathBuf,
    /// Size-forest parameters: `sizes` section.
    #[command(flatten)]
    params: perturbgen_cli::ConfigArgs,
    #[command(flatten)]
    common: perturbgen_cli::CommonArgs,
}

fn main() {
    let args: Args = perturbgen_cli::parse_args();
    perturbgen_cli::main(args.common.verbose, || run(args));
}

fn run(args: Args) -> Result<()> {
    let config = args.params.checked::<SizesParams>()?;
    let targets = IdMap::read(&args.targets)?;
    let cells = Cells::read(&args.counts, &args.obs)?;
    let sizes = target_sizes(&cells, &targets, &args.targets, &args.exclude, args.negative_control.as_deref(), &config, args.common.threads())?;
    let mut out = OutputSet::new();
    sizes.table.write(&out.stage(&args.out)?)?;
    plot_fit(&out.stage(&args.plot)?, &sizes.fit, config.params.scale)?;
    out.commit()?;
    Ok(())
}
