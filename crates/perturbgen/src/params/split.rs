//! The target and validation split's settings (config section `split`).
use super::{ensure, ensure_named, ensure_unique, ParamGuard};
use crate::error::Result;

/// Where the target pairs come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SplitMode {
    /// The pairs of an id_map (the simulator's, with its withheld truth cells; or Kaggle's,
    /// where there is no truth: submission mode). No cells are held out.
    IdMap,
    /// Hold out measured pairs as a local test set (dev mode): `holdout.pairs`, or `holdout.draw`
    /// compounds measured in all of `holdout.cell_types`.
    Holdout,
}

/// Which measured pairs are held out (split mode `holdout`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct HoldoutParams {
    /// Pairs written `cell type|compound`; when given, `draw` and `cell_types` are not used.
    pub pairs: Vec<String>,
    /// Compounds to draw among those measured in all of `cell_types`, at least 1.
    pub draw: usize,
    /// The cell types whose pairs of the drawn compounds are held out.
    pub cell_types: Vec<String>,
}

impl Default for HoldoutParams {
    fn default() -> Self {
        Self { pairs: Vec::new(), draw: 4, cell_types: vec!["NK cells".to_string()] }
    }
}

/// The targets and the models' validation cells (config section `split`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SplitParams {
    pub mode: SplitMode,
    pub holdout: HoldoutParams,
    /// Seed of the drawn hold-out and of the validation cells.
    pub seed: u64,
    /// Fraction of the training cells kept for the models' early stopping, in [0, 1) (the
    /// write-up: 3.2 %).
    pub validation_fraction: f64,
    /// Keep every cell whose cell type or compound occurs in the targets out of validation.
    pub keep_target_relevant: bool,
}

impl Default for SplitParams {
    fn default() -> Self {
        Self { mode: SplitMode::IdMap, holdout: HoldoutParams::default(), seed: 0, validation_fraction: 0.032, keep_target_relevant: true }
    }
}

/// What is held out, as checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Holdout {
    /// The targets are an id_map's pairs.
    IdMap,
    /// These (cell type, compound) pairs.
    Listed(Vec<(String, String)>),
    /// `n_compounds` compounds measured in all of `cell_types`.
    Drawn { n_compounds: usize, cell_types: Vec<String> },
}

/// Checked [`SplitParams`].
#[derive(Debug, Clone, PartialEq)]
pub struct SplitConfig {
    pub holdout: Holdout,
    pub seed: u64,
    pub validation_fraction: f64,
    pub keep_target_relevant: bool,
}

/// `cell type|compound` as a pair, split at the first `|` (a compound name may hold one, as
/// SMILES-like names do), both sides named.
pub fn parse_pair(text: &str) -> Option<(String, String)> {
    let (cell_type, compound) = text.split_once('|')?;
    (!cell_type.trim().is_empty() && !compound.trim().is_empty()).then(|| (cell_type.to_string(), compound.to_string()))
}

impl ParamGuard for SplitParams {
    type Checked = SplitConfig;
    const SECTION: &'static str = "split";

    fn check(self) -> Result<SplitConfig> {
        let s = Self::SECTION;
        let v = self.validation_fraction;
        ensure((0.0..1.0).contains(&v), s, "validation_fraction", || format!("must be in [0, 1), found {v}"))?;
        let h = &self.holdout;
        ensure(h.draw >= 1, s, "holdout.draw", || "must be at least 1".into())?;
        ensure_named(&h.cell_types, s, "holdout.cell_types")?;
        ensure_unique(&h.cell_types, s, "holdout.cell_types")?;
        ensure_unique(&h.pairs, s, "holdout.pairs")?;
        let mut pairs = Vec::with_capacity(h.pairs.len());
        for (i, p) in h.pairs.iter().enumerate() {
            let pair = parse_pair(p);
            ensure(pair.is_some(), s, &format!("holdout.pairs[{i}]"), || format!("{p:?} is not a hold-out pair \"cell type|compound\""))?;
            pairs.extend(pair);
        }
        let holdout = match self.mode {
            SplitMode::IdMap => Holdout::IdMap,
            SplitMode::Holdout if !pairs.is_empty() => Holdout::Listed(pairs),
            SplitMode::Holdout => {
                ensure(!h.cell_types.is_empty(), s, "holdout.cell_types", || "empty: name the cell types to draw pairs of, or list holdout.pairs".into())?;
                Holdout::Drawn { n_compounds: h.draw, cell_types: h.cell_types.clone() }
            }
        };
        Ok(SplitConfig { holdout, seed: self.seed, validation_fraction: v, keep_target_relevant: self.keep_target_relevant })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(json: &str) -> Result<SplitConfig> {
        serde_json::from_str::<SplitParams>(json).unwrap().check()
    }

    #[test]
    fn modes_and_bad_values() {
        assert_eq!(check("{}").unwrap().holdout, Holdout::IdMap);
        assert_eq!(check(r#"{"mode": "holdout"}"#).unwrap().holdout, Holdout::Drawn { n_compounds: 4, cell_types: vec!["NK cells".into()] });
        assert_eq!(
            check(r#"{"mode": "holdout", "holdout": {"pairs": ["B cells|X"]}}"#).unwrap().holdout,
            Holdout::Listed(vec![("B cells".into(), "X".into())])
        );
        let e = check(r#"{"validation_fraction": 1.0}"#).unwrap_err().to_string();
        assert_eq!(e, "split.validation_fraction: must be in [0, 1), found 1");
        let e = check(r#"{"holdout": {"pairs": ["B cells"]}}"#).unwrap_err().to_string();
        assert_eq!(e, r#"split.holdout.pairs[0]: "B cells" is not a hold-out pair "cell type|compound""#);
        // A compound name may hold a `|`: the pair splits at the first one.
        assert_eq!(
            check(r#"{"mode": "holdout", "holdout": {"pairs": ["B cells|X|Y"]}}"#).unwrap().holdout,
            Holdout::Listed(vec![("B cells".into(), "X|Y".into())])
        );
        let e = check(r#"{"holdout": {"draw": 0}}"#).unwrap_err().to_string();
        assert_eq!(e, "split.holdout.draw: must be at least 1");
    }
}
