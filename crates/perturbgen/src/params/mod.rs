//! Stage parameters, declared once. Each stage family has one serde type (defaults,
//! `deny_unknown_fields`, a doc comment per field, a JSON Schema derived by `schemars`) that
//! users write in `config/config.yaml`; [`ParamGuard::check`] turns it, once, into the validated type
//! that the fitting code takes (linfa's `ParamGuard`: `params.check()? -> Checked`). The
//! workflow's schema for those sections is generated from the same types (`pgen-config schema`).
use crate::error::{Error, Result};

/// A parameter set that must be checked before use.
pub trait ParamGuard {
    /// The validated form: the only thing the fitting code accepts.
    type Checked;
    /// The key of this family's section in the workflow config (`xgb`, `forest`, `train`).
    const SECTION: &'static str;
    /// Checks every constraint the types cannot express, naming the offending key.
    fn check(self) -> Result<Self::Checked>;
}

/// `Err(Param)` for `<section>.<key>` unless `ok`.
pub fn ensure(ok: bool, section: &str, key: &str, message: impl FnOnce() -> String) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::param(format!("{section}.{key}"), message()))
    }
}

pub mod blend;
pub mod ceiling;
pub mod de;
pub mod external;
pub mod filter;
pub mod input;
pub mod leaderboard;
pub mod predict;
pub mod simulate;
pub mod split;

/// `Err(Param)` for `<section>.<key>` if a list names the same item twice.
pub fn ensure_unique(items: &[String], section: &str, key: &str) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for item in items {
        ensure(seen.insert(item.as_str()), section, key, || format!("`{item}` is listed twice"))?;
    }
    Ok(())
}

/// `Err(Param)` for `<section>.<key>` if a name is empty or only blanks.
pub fn ensure_named(items: &[String], section: &str, key: &str) -> Result<()> {
    for item in items {
        ensure(!item.trim().is_empty(), section, key, || "an empty name".into())?;
    }
    Ok(())
}
