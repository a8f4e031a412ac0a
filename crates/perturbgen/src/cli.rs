//! What every `pgen-*` executable does at its edge: the shared flags, logging set-up and the
//! one-line error.

/// Flags every stage takes (`#[command(flatten)]` into its `Args`).
#[derive(clap::Args, Debug, Clone)]
pub struct CommonArgs {
    /// Worker threads; the stage uses no more (0 = all cores).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// More log output (-v debug, -vv trace); RUST_LOG overrides it.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// How a stage runs the official limma recipe (pgen-limma, pgen-forest).
#[derive(clap::Args, Debug, Clone)]
pub struct LimmaArgs {
    /// Model formula; `Rpert` is the compound factor, other terms name sample columns.
    #[arg(long, default_value = "~0+Rpert+donor_id+plate_name+row")]
    pub design: String,
    #[arg(long, default_value = "Dimethyl Sulfoxide")]
    pub negative_control: String,
    #[arg(long, default_value = "Rscript")]
    pub rscript: std::path::PathBuf,
    #[arg(long, default_value = "scripts/limma_de.R")]
    pub script: std::path::PathBuf,
}

impl LimmaArgs {
    pub fn config(&self, threads: usize) -> crate::limma::LimmaConfig {
        crate::limma::LimmaConfig {
            rscript: self.rscript.clone(),
            script: self.script.clone(),
            design: self.design.clone(),
            negative_control: self.negative_control.clone(),
            threads,
        }
    }
}

/// Sets up logging, runs the stage and exits 1 with a one-line error if it fails.
pub fn main(verbose: u8, run: impl FnOnce() -> anyhow::Result<()>) {
    init_logging(verbose);
    exit_on_error(run());
}

/// Logs through `log` to stderr; `-v` raises the level, `RUST_LOG` overrides it.
pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default))
        .format_timestamp_secs()
        .try_init();
}

/// Prints `error: …` (the whole cause chain on one line) and exits 1 on failure.
pub fn exit_on_error(result: anyhow::Result<()>) {
    if let Err(e) = result {
        let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
        let mut line = chain[0].clone();
        for c in &chain[1..] {
            if !line.contains(c.as_str()) {
                line.push_str(": ");
                line.push_str(c);
            }
        }
        eprintln!("error: {line}");
        std::process::exit(1);
    }
}
