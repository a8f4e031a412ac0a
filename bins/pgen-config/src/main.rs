//! pgen-config: the stage parameter types as the workflow sees them. `schema` writes the JSON
//! Schema of the config sections the Rust types own (`workflow/schemas/stages.schema.json`,
//! referenced by `config.schema.yaml`); `check` runs every such section of a config through its
//! type and its checks, so a bad value fails before any job runs, naming the key; `cells` checks
//! the config against the cells the run will ingest (perturbgen::config_check).
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

mod data_checks;
mod sections;

#[derive(Parser, Debug)]
#[command(version, about = "Stage parameters: generate their JSON Schema, or check a workflow config")]
struct Args {
    #[command(subcommand)]
    command: Command,
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the JSON Schema of the typed sections (or write it with --out).
    Schema {
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check every typed section of a workflow config (YAML or JSON file).
    Check {
        /// The config, e.g. config/config.yaml, or the JSON the workflow writes after its overrides.
        config: PathBuf,
    },
    /// Check a workflow config against the cells: hold-out pairs, cell types, compounds, the
    /// negative control, filter.min_cells, split.holdout.draw. Exit 1: a config problem (one
    /// line, key first); exit 3: the cells cannot be read now (ingest will say why). On success
    /// prints the cell types and the number of compounds (JSON).
    Cells {
        /// The config (YAML or JSON); keys other than the checked ones are ignored.
        config: PathBuf,
        /// The obs the run ingests: an obs CSV (adata_obs_meta.csv layout, the study's column
        /// names through the config's input.columns), an .h5ad, or the ingested obs.parquet.
        #[arg(long)]
        cells: Option<PathBuf>,
        /// The id_map of the targets (split mode id_map), for its cell types.
        #[arg(long)]
        id_map: Option<PathBuf>,
    },
}

/// Exit status of `cells` when the cells cannot be read now.
const UNREADABLE: i32 = 3;

fn main() {
    let args: Args = perturbgen_cli::parse_args();
    perturbgen_cli::main(args.verbose, || run(args));
}

fn run(args: Args) -> Result<()> {
    match args.command {
        Command::Schema { out } => {
            let text = sections::schema_json();
            match out {
                Some(path) => perturbgen::atomic::write_atomic(&path, |w| w.write_all(text.as_bytes()))
                    .with_context(|| format!("{}: cannot write", path.display()))?,
                None => print!("{text}"),
            }
            Ok(())
        }
        Command::Check { config } => {
            sections::check_all(&config)?;
            log::info!("{}: every typed section checks", config.display());
            Ok(())
        }
        Command::Cells { config, cells, id_map } => data_checks::run(&config, cells.as_deref(), id_map.as_deref(), UNREADABLE),
    }
}
