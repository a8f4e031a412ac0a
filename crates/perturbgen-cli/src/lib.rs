//! What every `pgen-*` executable does at its edge: the shared flags, reading its section of
//! the workflow config, logging set-up and the one-line error.
use anyhow::Context;
use perturbgen::params::ParamGuard;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::path::PathBuf;

/// Flags every stage takes (`#[command(flatten)]` into its `Args`).
#[derive(clap::Args, Debug, Clone)]
pub struct CommonArgs {
    /// Worker threads (0 = all cores); capped at the cores this process may use.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// More log output (-v debug, -vv trace); RUST_LOG overrides it.
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

impl CommonArgs {
    /// The thread count to use: `--threads`, 0 meaning all cores, capped at the cores available
    /// to this process (its CPU affinity / cgroup quota, as `std` reads them).
    pub fn threads(&self) -> usize {
        resolve_threads(self.threads)
    }
}

/// `requested` threads, 0 = all, capped at what the machine gives this process.
pub fn resolve_threads(requested: usize) -> usize {
    let available = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    match requested {
        0 => available,
        n if n > available => {
            log::warn!("--threads {n}: only {available} cores available, using {available}");
            available
        }
        n => n,
    }
}

/// How a stage runs the official limma recipe (pgen-limma, pgen-forest, pgen-generate): the
/// recipe's R script (a path); its settings are the config's `de` section.
#[derive(clap::Args, Debug, Clone)]
pub struct LimmaArgs {
    /// The limma recipe (scripts/limma_de.R of the repository).
    #[arg(long, default_value = "scripts/limma_de.R")]
    pub script: std::path::PathBuf,
}

impl LimmaArgs {
    /// The checked limma settings: `de` (from `config`'s sources) with this script.
    pub fn config(&self, config: &ConfigArgs, threads: usize) -> anyhow::Result<perturbgen::limma::LimmaConfig> {
        Ok(config.section::<perturbgen::params::de::DeParams>()?.limma(self.script.clone(), threads))
    }
}

/// Where a stage's parameters come from, lowest precedence first: the type's defaults, the
/// stage's section of `--config`, `--params`, then each `--set`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ConfigArgs {
    /// Workflow config file (YAML or JSON, e.g. config/config.yaml); the stage reads its own section.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The stage's section as a JSON object (what the workflow passes).
    #[arg(long, value_name = "JSON")]
    pub params: Option<String>,
    /// Sets one key of the section: KEY=VALUE, VALUE in YAML (`--set eta=0.1`,
    /// `--set features=[compound_mean]`, `--set dgd.latent_lr=0.02`); repeatable, applied last.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Another config section the stage reads besides its own, NAME=JSON (e.g. the `de`
    /// section a limma stage shares); over `--config`'s section of that name. Repeatable.
    #[arg(long = "section", value_name = "NAME=JSON")]
    pub sections: Vec<String>,
}

impl ConfigArgs {
    /// The section `P::SECTION`, merged from every source and deserialised (unknown keys and
    /// wrong types are refused, naming the key), then checked into `P::Checked`.
    pub fn checked<P: ParamGuard + DeserializeOwned>(&self) -> anyhow::Result<P::Checked> {
        let params: P = self.load(P::SECTION)?;
        Ok(params.check()?)
    }

    /// Another section the stage reads (`--config`'s, then `--section NAME=JSON`; `--params`
    /// and `--set` are the stage's own section's), deserialised and checked.
    pub fn section<P: ParamGuard + DeserializeOwned>(&self) -> anyhow::Result<P::Checked> {
        let name = P::SECTION;
        let value = self.from_file(name)?;
        let params: P = self.deserialize(value, name)?;
        Ok(params.check()?)
    }

    /// The section `section` merged from every source, deserialised but not checked.
    pub fn load<P: DeserializeOwned>(&self, section: &str) -> anyhow::Result<P> {
        let value = self.merged(section)?;
        self.deserialize(value, section)
    }

    fn deserialize<P: DeserializeOwned>(&self, value: Value, section: &str) -> anyhow::Result<P> {
        let origin = self.origin();
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let key = if path == "." { section.to_string() } else { format!("{section}.{path}") };
            anyhow::anyhow!("{origin}: {key}: {}", e.into_inner())
        })
    }

    fn origin(&self) -> String {
        match (&self.config, self.params.is_some() || !self.set.is_empty() || !self.sections.is_empty()) {
            (Some(p), false) => p.display().to_string(),
            (Some(p), true) => format!("{} + flags", p.display()),
            (None, _) => "parameters".to_string(),
        }
    }

    /// The section `section` as merged from the config file, `--params` and `--set`.
    pub fn merged(&self, section: &str) -> anyhow::Result<Value> {
        let mut value = self.from_file(section)?;
        if let Some(json) = &self.params {
            let v: Value = serde_json::from_str(json).map_err(|e| anyhow::anyhow!("--params: not a JSON object: {e}"))?;
            anyhow::ensure!(v.is_object(), "--params: expected a JSON object of `{section}` keys, found {v}");
            merge(&mut value, v);
        }
        for assignment in &self.set {
            let (key, raw) = assignment
                .split_once('=')
                .filter(|(k, _)| !k.trim().is_empty())
                .ok_or_else(|| anyhow::anyhow!("--set `{assignment}`: expected KEY=VALUE"))?;
            let parsed: Value = serde_yaml_ng::from_str(raw).map_err(|e| anyhow::anyhow!("--set {key}: value `{raw}` is not YAML: {e}"))?;
            let mut node = &mut value;
            let parts: Vec<&str> = key.trim().split('.').collect();
            for (i, part) in parts.iter().enumerate() {
                let obj = node.as_object_mut().ok_or_else(|| anyhow::anyhow!("--set {key}: `{}` is not a section", parts[..i].join(".")))?;
                if i + 1 == parts.len() {
                    obj.insert(part.to_string(), parsed.clone());
                    break;
                }
                node = obj.entry(part.to_string()).or_insert_with(|| Value::Object(Default::default()));
                if node.is_null() {
                    *node = Value::Object(Default::default());
                }
            }
        }
        Ok(value)
    }
}

impl ConfigArgs {
    /// `--config`'s section `section` (an empty object without a file or section), then the
    /// `--section` of that name.
    fn from_file(&self, section: &str) -> anyhow::Result<Value> {
        let mut value = Value::Object(Default::default());
        if let Some(path) = &self.config {
            let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
            let whole: Value = serde_yaml_ng::from_str(&text).map_err(|e| anyhow::anyhow!("{}: not a YAML/JSON config: {e}", path.display()))?;
            match whole.get(section) {
                Some(v) if !v.is_null() => merge(&mut value, v.clone()),
                _ => log::debug!("{}: no `{section}` section; using defaults", path.display()),
            }
        }
        for item in &self.sections {
            let (key, json) = item.split_once('=').ok_or_else(|| anyhow::anyhow!("--section `{item}`: expected NAME=JSON"))?;
            if key == section {
                let v: Value = serde_json::from_str(json).map_err(|e| anyhow::anyhow!("--section {key}: not a JSON object: {e}"))?;
                anyhow::ensure!(v.is_object(), "--section {key}: expected a JSON object of `{key}` keys, found {v}");
                merge(&mut value, v);
            }
        }
        Ok(value)
    }
}

/// Deep merge: objects key by key, anything else replaced.
fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(slot) if slot.is_object() && v.is_object() => merge(slot, v),
                    _ => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// Parses the command line like `clap::Parser::parse`, except that a usage error (an unknown
/// flag, a bad value) is the stage's one-line `error: …` with exit status 1; `--help` and
/// `--version` print as usual.
pub fn parse_args<A: clap::Parser>() -> A {
    match A::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let text = e.render().to_string();
            let line = one_line_usage_error(&text);
            eprintln!("error: {line}");
            std::process::exit(1);
        }
    }
}

/// clap's message up to its usage/help hint, on one line.
fn one_line_usage_error(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .trim_start_matches("error: ")
        .to_string()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, PartialEq, Default)]
    #[serde(default, deny_unknown_fields)]
    struct Toy {
        a: f64,
        b: Vec<String>,
        inner: Inner,
    }

    #[derive(serde::Deserialize, Debug, PartialEq, Default)]
    #[serde(default, deny_unknown_fields)]
    struct Inner {
        k: Option<usize>,
    }

    fn args(config: Option<&str>, params: Option<&str>, set: &[&str]) -> (ConfigArgs, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let config = config.map(|text| {
            let p = dir.path().join("config.yaml");
            std::fs::write(&p, text).unwrap();
            p
        });
        (ConfigArgs { config, params: params.map(str::to_string), set: set.iter().map(|s| s.to_string()).collect(), sections: Vec::new() }, dir)
    }

    #[test]
    fn sources_merge_in_order() {
        let (a, _d) = args(Some("toy: {a: 1.5, b: [x], inner: {k: 3}}\nother: {z: 1}\n"), Some(r#"{"a": 2.5}"#), &["inner.k=7", "b=[y, z]"]);
        let t: Toy = a.load("toy").unwrap();
        assert_eq!(t, Toy { a: 2.5, b: vec!["y".into(), "z".into()], inner: Inner { k: Some(7) } });
        // A missing section is all defaults.
        let u: Toy = a.load("absent").unwrap_or_default();
        assert_eq!(u.inner.k, Some(7), "--set still applies to an absent section");
    }

    #[test]
    fn unknown_keys_and_bad_types_name_the_key() {
        let (a, _d) = args(Some("toy: {inner: {kk: 3}}\n"), None, &[]);
        let e = a.load::<Toy>("toy").unwrap_err().to_string();
        assert!(e.contains("toy.inner") && e.contains("unknown field `kk`"), "{e}");
        let (a, _d) = args(None, None, &["a=fast"]);
        let e = a.load::<Toy>("toy").unwrap_err().to_string();
        assert!(e.contains("toy.a") && e.contains("invalid type"), "{e}");
        let (a, _d) = args(None, None, &["novalue"]);
        assert!(a.load::<Toy>("toy").unwrap_err().to_string().contains("expected KEY=VALUE"));
    }

    #[test]
    fn usage_errors_fold_to_one_line() {
        let text = "error: invalid value 'gan' for '--model <MODEL>'\n  [possible values: dgd, nbvae]\n\nFor more information, try '--help'.\n";
        assert_eq!(one_line_usage_error(text), "invalid value 'gan' for '--model <MODEL>' [possible values: dgd, nbvae]");
    }

    #[test]
    fn threads_zero_is_all_cores_and_large_is_capped() {
        let all = std::thread::available_parallelism().unwrap().get();
        assert_eq!(resolve_threads(0), all);
        assert_eq!(resolve_threads(100_000), all);
        assert_eq!(resolve_threads(1), 1);
    }
}
