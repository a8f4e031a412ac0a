//! pgen-filter: the cells the generative models train on — drops positive-control cells and
//! compounds with too few cells (the DE stage keeps every cell, as the official recipe does).
use anyhow::Result;
use clap::Parser;
use perturbgen::atomic::OutputSet;
use perturbgen::cells::Cells;
use perturbgen::filter::{filter_cells, write_removals, FilterConfig};
use perturbgen::params::de::DeParams;
use perturbgen::params::filter::FilterParams;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(version, about = "Drop positive-control cells and compounds measured in too few cells")]
struct Args {
    #[arg(long)]
    counts: PathBuf,
    #[arg(long)]
    obs: PathBuf,
    /// The `filter` section (drop_compounds, min_cells) is this stage's own; it also reads
    /// `de` (the negative control).
    #[command(flatten)]
    params: perturbgen_cli::ConfigArgs,
    #[arg(long)]
    out_counts: PathBuf,
    #[arg(long)]
    out_obs: PathBuf,
    /// What was removed and why (CSV: sm_name, reason, cells).
    #[arg(long)]
    removed: PathBuf,
    /// A list of obs_ids (one per line, e.g. the split's validation cells) to narrow to the
    /// kept cells; written to --out-ids.
    #[arg(long, requires = "out_ids")]
    ids: Option<PathBuf>,
    #[arg(long, requires = "ids")]
    out_ids: Option<PathBuf>,
    /// Also leave out the cells of these (cell type, compound) pairs (an id_map or
    /// `cell_type,sm_name` CSV): the generative inner hold-out's models must not see its pairs.
    #[arg(long)]
    drop_pairs: Option<PathBuf>,
    #[command(flatten)]
    common: perturbgen_cli::CommonArgs,
}

fn main() {
    let args: Args = perturbgen_cli::parse_args();
    perturbgen_cli::main(args.common.verbose, || run(args));
}

fn run(args: Args) -> Result<()> {
    perturbgen::threads::with_threads(args.common.threads(), || -> Result<()> {
        let filter = args.params.checked::<FilterParams>()?;
        let de = args.params.section::<DeParams>()?;
        let config = FilterConfig::new(filter, de.negative_control);
        let cells = Cells::read(&args.counts, &args.obs)?;
        let (mut keep, mut removed) = filter_cells(&cells.obs, &config)?;
        if let Some(path) = &args.drop_pairs {
            let pairs = perturbgen::io::id_map::IdMap::read_pairs(path)?;
            let (kept, dropped) = perturbgen::filter::drop_pairs(&cells.obs, keep, &pairs);
            keep = kept;
            removed.extend(dropped);
        }
        for r in &removed {
            log::info!("removed {} ({} cells): {}", r.sm_name, r.cells, r.reason);
        }
        log::info!("kept {} of {} cells", keep.len(), cells.len());
        let kept = cells.take(&keep);
        let mut out = OutputSet::new();
        kept.write(&out.stage(&args.out_counts)?, &out.stage(&args.out_obs)?)?;
        write_removals(&out.stage(&args.removed)?, &removed)?;
        if let (Some(ids), Some(out_ids)) = (&args.ids, &args.out_ids) {
            let text = std::fs::read_to_string(ids).map_err(|e| perturbgen::Error::io(ids, e))?;
            let kept_ids: std::collections::HashSet<&str> = kept.obs.obs_id.iter().map(String::as_str).collect();
            let listed: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
            let narrowed: Vec<&str> = listed.iter().copied().filter(|id| kept_ids.contains(id)).collect();
            log::info!("{}: {} of {} ids are kept cells", ids.display(), narrowed.len(), listed.len());
            perturbgen::atomic::write_atomic(out.stage(out_ids)?, |w| {
                for id in &narrowed {
                    writeln!(w, "{id}")?;
                }
                Ok(())
            })?;
        }
        out.commit()?;
        Ok(())
    })?
}
