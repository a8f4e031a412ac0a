//! pgen-config: the stage parameter types as the workflow sees them. `schema` writes the JSON
//! Schema of the config sections the Rust types own (`workflow/schemas/stages.schema.json`,
//! referenced by `config.schema.yaml`); `check` runs every such section of a config through its
//! type and its checks, so a bad value fails before any job runs, naming the key.
use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

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
        /// The config, e.g. config.yaml, or the JSON the workflow writes after its overrides.
        config: PathBuf,
    },
}

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
    }
}
