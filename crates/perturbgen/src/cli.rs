//! What every `pgen-*` executable does at its edge: logging set-up and the one-line error.

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
