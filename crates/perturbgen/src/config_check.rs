//! The workflow config against the cells, before any job runs (`pgen-config cells`): hold-out
//! pairs, cell types, compounds, the negative control, `filter.min_cells` and `split.holdout.draw`
//! checked against the (cell type, compound) counts of the obs the run will ingest. The same
//! checks the stages make when they run (pgen-split, pgen-filter, pgen-limma), said once, early,
//! with the key to change. Every problem is one line `<dotted key>: <reason>`.
use crate::io::obs::ObsTable;
use crate::params::blend::BlendParams;
use crate::params::de::{DeParams, DMSO};
use crate::params::filter::{FilterParams, POSITIVE_CONTROLS};
use crate::params::split::{parse_pair, SplitMode, SplitParams};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

/// Cells per (cell type, compound) of an obs table, and where it was read (for messages).
#[derive(Debug, Clone, Default)]
pub struct CellCounts {
    pairs: BTreeMap<(String, String), usize>,
    pub cell_types: Vec<String>,
    pub compounds: Vec<String>,
    per_compound: HashMap<String, usize>,
    pub source: String,
}

/// Why the cells could not be counted.
#[derive(Debug)]
pub enum ReadError {
    /// A config problem (a mapped column that the file lacks): one line, key first.
    Config(String),
    /// The file cannot be read now (ingest will say what is wrong with it).
    Unreadable(String),
}

impl CellCounts {
    pub fn new(pairs: impl IntoIterator<Item = ((String, String), usize)>, source: String) -> Self {
        let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
        for (pair, n) in pairs {
            *counts.entry(pair).or_default() += n;
        }
        let cell_types: BTreeSet<String> = counts.keys().map(|(t, _)| t.clone()).collect();
        let mut per_compound: HashMap<String, usize> = HashMap::new();
        for ((_, c), n) in &counts {
            *per_compound.entry(c.clone()).or_default() += n;
        }
        let compounds: BTreeSet<String> = per_compound.keys().cloned().collect();
        Self { pairs: counts, cell_types: cell_types.into_iter().collect(), compounds: compounds.into_iter().collect(), per_compound, source }
    }

    /// Counts two text columns row by row.
    pub fn from_columns(cell_type: &[String], sm_name: &[String], source: String) -> Self {
        let mut pairs: HashMap<(&str, &str), usize> = HashMap::new();
        for (t, c) in cell_type.iter().zip(sm_name) {
            *pairs.entry((t, c)).or_default() += 1;
        }
        Self::new(pairs.into_iter().map(|((t, c), n)| ((t.to_string(), c.to_string()), n)), source)
    }

    /// The pipeline's ingested `obs.parquet`.
    pub fn read_obs_parquet(path: &Path) -> Result<Self, ReadError> {
        let obs = ObsTable::read(path).map_err(|e| ReadError::Unreadable(e.to_string()))?;
        let (ct, sm): (Vec<String>, Vec<String>) = (0..obs.len()).map(|i| (obs.cell_type.get(i).to_string(), obs.sm_name.get(i).to_string())).unzip();
        Ok(Self::from_columns(&ct, &sm, path.display().to_string()))
    }

    /// The obs the run ingests, by its file name: the ingested `.parquet`, an `.h5ad`, or an obs
    /// CSV; `columns` is the config's `input.columns` (the study's names, keyed by the pipeline's).
    pub fn read(path: &Path, columns: &BTreeMap<String, String>) -> Result<Self, ReadError> {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("parquet") => Self::read_obs_parquet(path),
            Some("h5ad") => Self::read_h5ad_obs(path, columns),
            _ => Self::read_obs_csv(path, columns),
        }
    }

    /// An obs CSV (`adata_obs_meta.csv` layout, or the study's names mapped by `input.columns`):
    /// only the cell type and compound columns are read.
    pub fn read_obs_csv(path: &Path, columns: &BTreeMap<String, String>) -> Result<Self, ReadError> {
        let unreadable = |e: csv::Error| ReadError::Unreadable(format!("{}: {e}", path.display()));
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_path(path).map_err(unreadable)?;
        let header: Vec<String> = reader.headers().map_err(unreadable)?.iter().map(str::to_string).collect();
        let [ct, sm] = mapped_columns(&path.display().to_string(), columns, &header)?;
        let idx = [ct, sm].map(|name| header.iter().position(|h| *h == name).expect("mapped_columns found it"));
        let (mut ct, mut sm) = (Vec::new(), Vec::new());
        for record in reader.records() {
            let record = record.map_err(unreadable)?;
            ct.push(record.get(idx[0]).unwrap_or("").to_string());
            sm.push(record.get(idx[1]).unwrap_or("").to_string());
        }
        Ok(Self::from_columns(&ct, &sm, path.display().to_string()))
    }

    /// The obs dataframe of an `.h5ad` (its columns mapped by `input.columns`), without the counts.
    pub fn read_h5ad_obs(path: &Path, columns: &BTreeMap<String, String>) -> Result<Self, ReadError> {
        let obs = crate::io::h5ad::read_h5ad_obs(path).map_err(|e| ReadError::Unreadable(e.to_string()))?;
        let source = format!("{} (obs)", path.display());
        let available: Vec<String> = obs.columns.iter().map(|(n, _)| n.clone()).collect();
        let [ct, sm] = mapped_columns(&source, columns, &available)?;
        let column = |name: &str| obs.column(name).expect("mapped_columns found it");
        Ok(Self::from_columns(column(&ct), column(&sm), source))
    }

    fn n(&self, cell_type: &str, compound: &str) -> usize {
        self.pairs.get(&(cell_type.to_string(), compound.to_string())).copied().unwrap_or(0)
    }

    fn has_cell_type(&self, t: &str) -> bool {
        self.cell_types.binary_search_by(|x| x.as_str().cmp(t)).is_ok()
    }

    fn has_compound(&self, c: &str) -> bool {
        self.per_compound.contains_key(c)
    }

    fn cell_types_of(&self, compound: &str) -> Vec<String> {
        self.cell_types.iter().filter(|t| self.n(t, compound) > 0).cloned().collect()
    }

    fn no_cell_type(&self, t: &str) -> String {
        format!("no such cell type `{t}` in {}{} (cell types: {})", self.source, did_you_mean(t, &self.cell_types), names(&self.cell_types, 8, true))
    }

    fn no_compound(&self, c: &str) -> String {
        format!(
            "no such compound `{c}` in {}{} ({} compounds: {})",
            self.source,
            did_you_mean(c, &self.compounds),
            self.compounds.len(),
            names(&self.compounds, 6, false)
        )
    }
}

/// The file's names of the cell type and compound columns (`input.columns`, else the pipeline's
/// own), or the config error naming the one `available` lacks.
fn mapped_columns(source: &str, columns: &BTreeMap<String, String>, available: &[String]) -> Result<[String; 2], ReadError> {
    let find = |name: &str| {
        let column = columns.get(name).map(String::as_str).unwrap_or(name);
        if available.iter().any(|a| a == column) {
            Ok(column.to_string())
        } else {
            Err(ReadError::Config(missing_column(source, name, column, available)))
        }
    };
    Ok([find("cell_type")?, find("sm_name")?])
}

/// The message for a mapped (or default) obs column the file lacks.
fn missing_column(source: &str, pipeline_name: &str, column: &str, available: &[String]) -> String {
    if column != pipeline_name {
        format!(
            "input.columns.{pipeline_name}: no column `{column}` in {source}{} (columns: {})",
            did_you_mean(column, available),
            names(available, 12, true)
        )
    } else {
        format!(
            "input.columns: {source} has no `{pipeline_name}` column{} (columns: {}): name the study's with input.columns.{pipeline_name}",
            did_you_mean(column, available),
            names(available, 12, true)
        )
    }
}

/// `a, b, c, … (20 in all)` (without the count: `a, b, c, …`).
pub fn names(values: &[String], limit: usize, count: bool) -> String {
    if values.len() <= limit {
        return values.join(", ");
    }
    let head = values[..limit].join(", ");
    if count {
        format!("{head}, … ({} in all)", values.len())
    } else {
        format!("{head}, …")
    }
}

/// `; did you mean `x`?` for the candidates containing `word` (up to three) or, failing that, the
/// closest one by normalised Levenshtein similarity (at least 0.7); empty when none is close.
pub fn did_you_mean(word: &str, candidates: &[String]) -> String {
    let lower = word.to_lowercase();
    let mut close: Vec<&str> = if word.chars().count() >= 3 { candidates.iter().filter(|c| c.to_lowercase().contains(&lower)).take(3).map(String::as_str).collect() } else { Vec::new() };
    if close.is_empty() {
        let best = candidates
            .iter()
            .map(|c| (strsim::normalized_levenshtein(word, c), c))
            .filter(|(s, _)| *s >= 0.7)
            .fold(None, |best: Option<(f64, &String)>, (s, c)| match best {
                Some((b, _)) if b >= s => best,
                _ => Some((s, c)),
            });
        close.extend(best.map(|(_, c)| c.as_str()));
    }
    if close.is_empty() {
        return String::new();
    }
    format!("; did you mean {}?", close.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(" or "))
}

/// The config keys the checks read (other sections and keys are ignored).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
pub struct CheckedConfig {
    pub cell_types: Vec<String>,
    pub split: SplitParams,
    pub blend: BlendParams,
    pub filter: FilterParams,
    pub de: DeParams,
}

/// The id_map targets: where, and their cell types.
pub struct IdMapCellTypes {
    pub source: String,
    pub cell_types: Vec<String>,
}

/// Checks `config` against itself and, when given, the cells and the id_map's cell types.
/// `Err` is the first problem, one line `<dotted key>: <reason>`.
pub fn check(config: &CheckedConfig, cells: Option<&CellCounts>, id_map: Option<&IdMapCellTypes>) -> Result<(), String> {
    let cell_types = &config.cell_types;
    let control = config.de.negative_control.as_str();
    let hold = &config.split.holdout;

    let mut first: HashMap<&str, usize> = HashMap::new();
    for (i, t) in cell_types.iter().enumerate() {
        if let Some(j) = first.get(t.as_str()) {
            return Err(format!("cell_types[{i}]: `{t}` is listed twice (also cell_types[{j}])"));
        }
        first.insert(t, i);
    }
    if let Some(cells) = cells {
        for (i, t) in cell_types.iter().enumerate() {
            if !cells.has_cell_type(t) {
                return Err(format!("cell_types[{i}]: {}", cells.no_cell_type(t)));
            }
        }
        if !cells.has_compound(control) {
            return Err(format!("de.negative_control: {}", cells.no_compound(control)));
        }
        // limma runs per listed cell type, against its own negative-control cells.
        for (i, t) in cell_types.iter().enumerate() {
            if cells.n(t, control) == 0 {
                return Err(format!("cell_types[{i}]: `{t}` has no `{control}` cells (de.negative_control) in {}: its DE has no reference; leave it out of cell_types", cells.source));
            }
        }
    }
    let in_cell_types = |key: &str, t: &str, why: &str| -> Result<(), String> {
        if first.contains_key(t) {
            Ok(())
        } else {
            Err(format!("{key}: cell type `{t}` is not in cell_types ({}), {why}: add it there", names(cell_types, 8, true)))
        }
    };
    const TRUTH_NEEDS_DE: &str = "which the DE stage runs for (the held-out truth needs its DE)";

    let mut held: BTreeSet<(String, String)> = BTreeSet::new();
    if config.split.mode == SplitMode::Holdout {
        if !hold.pairs.is_empty() {
            for (i, pair) in hold.pairs.iter().enumerate() {
                let key = format!("split.holdout.pairs[{i}]");
                let Some((t, c)) = parse_pair(pair) else {
                    return Err(format!("{key}: {pair:?} is not a hold-out pair \"cell type|compound\""));
                };
                if c == control {
                    return Err(format!("{key}: `{pair}`: `{c}` is the negative control (de.negative_control), which every contrast needs"));
                }
                if let Some(cells) = cells {
                    if !cells.has_cell_type(&t) {
                        return Err(format!("{key}: `{pair}`: {}", cells.no_cell_type(&t)));
                    }
                    if !cells.has_compound(&c) {
                        return Err(format!("{key}: `{pair}`: {}", cells.no_compound(&c)));
                    }
                    if cells.n(&t, &c) == 0 {
                        return Err(format!(
                            "{key}: `{pair}`: no such cells in {}: `{c}` was measured in {}, not in `{t}`",
                            cells.source,
                            names(&cells.cell_types_of(&c), 8, true)
                        ));
                    }
                }
                in_cell_types(&key, &t, TRUTH_NEEDS_DE)?;
                held.insert((t, c));
            }
        } else {
            if hold.cell_types.is_empty() {
                return Err("split.holdout.cell_types: empty: name the cell types to draw hold-out compounds in (or list split.holdout.pairs)".into());
            }
            for (i, t) in hold.cell_types.iter().enumerate() {
                let key = format!("split.holdout.cell_types[{i}]");
                if let Some(cells) = cells {
                    if !cells.has_cell_type(t) {
                        return Err(format!("{key}: {}", cells.no_cell_type(t)));
                    }
                }
                in_cell_types(&key, t, TRUTH_NEEDS_DE)?;
            }
            if let Some(cells) = cells {
                let skip = |c: &str| c == control || c == DMSO || POSITIVE_CONTROLS.contains(&c);
                let measured = cells.compounds.iter().filter(|c| !skip(c) && hold.cell_types.iter().all(|t| cells.n(t, c) > 0)).count();
                if hold.draw > measured {
                    return Err(format!(
                        "split.holdout.draw: {} compounds asked, but only {measured} (besides the controls) are measured in all of {} in {}",
                        hold.draw,
                        hold.cell_types.join(", "),
                        cells.source
                    ));
                }
            }
        }
    } else if let Some(id_map) = id_map {
        if id_map.cell_types.is_empty() {
            return Err(format!("split.mode: id_map: {} lists no pairs to predict (or hold out measured pairs: split.mode holdout)", id_map.source));
        }
        for t in &id_map.cell_types {
            if !first.contains_key(t.as_str()) {
                return Err(format!("cell_types: lacks `{t}`, a target cell type of {} (split.mode id_map), which the DE stage must run for", id_map.source));
            }
        }
    }
    for (i, t) in config.blend.inner.cell_types.iter().enumerate() {
        let key = format!("blend.inner.cell_types[{i}]");
        if let Some(cells) = cells {
            if !cells.has_cell_type(t) {
                return Err(format!("{key}: {}", cells.no_cell_type(t)));
            }
        }
        in_cell_types(&key, t, "the cell types of de_train, where the inner hold-out is drawn")?;
    }

    let drop = &config.filter.drop_compounds;
    for (i, c) in drop.iter().enumerate() {
        if c == control {
            return Err(format!("filter.drop_compounds[{i}]: `{c}` is the negative control (de.negative_control), which every contrast needs"));
        }
    }
    if let Some(cells) = cells {
        for (i, c) in drop.iter().enumerate() {
            if !cells.has_compound(c) {
                let hint = if POSITIVE_CONTROLS.contains(&c.as_str()) { " (a study without positive controls: drop_compounds: [])" } else { "" };
                return Err(format!("filter.drop_compounds[{i}]: {}{hint}", cells.no_compound(c)));
            }
        }
        // What pgen-filter counts: the split's training cells (the listed hold-out pairs are not
        // among them; a drawn hold-out is unknown here, so this is an upper bound), per
        // compound; the negative control is never dropped, drop_compounds go anyway.
        let mut per_compound: BTreeMap<&str, usize> = BTreeMap::new();
        for ((t, c), n) in &cells.pairs {
            if !held.contains(&(t.clone(), c.clone())) && c != control && !drop.contains(c) {
                *per_compound.entry(c).or_default() += n;
            }
        }
        let min_cells = config.filter.min_cells;
        // The first of the largest in name order.
        if let Some((largest, n)) = per_compound.iter().fold(None, |best: Option<(&str, usize)>, (c, &n)| match best {
            Some((_, b)) if b >= n => best,
            _ => Some((c, n)),
        }) {
            if min_cells > n {
                return Err(format!("filter.min_cells: {min_cells} drops every compound: the largest, `{largest}`, has {n} training cells in {}", cells.source));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells() -> CellCounts {
        let pairs = [("B cells", DMSO, 10), ("B cells", "A", 5), ("NK cells", DMSO, 8), ("NK cells", "A", 3), ("NK cells", "B", 7)];
        CellCounts::new(pairs.iter().map(|(t, c, n)| ((t.to_string(), c.to_string()), *n)), "obs.csv".into())
    }

    fn config(yaml: &str) -> CheckedConfig {
        let mut value: serde_json::Value = serde_json::from_str(r#"{"cell_types": ["B cells", "NK cells"], "filter": {"drop_compounds": []}}"#).unwrap();
        let extra: serde_json::Value = serde_json::from_str(yaml).unwrap();
        for (k, v) in extra.as_object().unwrap() {
            value[k] = v.clone();
        }
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn problems_name_their_key_and_the_cells() {
        let c = cells();
        let e = |json: &str| check(&config(json), Some(&c), None).unwrap_err();
        assert!(check(&config("{}"), Some(&c), None).is_ok());
        assert_eq!(e(r#"{"split": {"mode": "holdout", "holdout": {"pairs": ["B cells|B"]}}}"#), "split.holdout.pairs[0]: `B cells|B`: no such cells in obs.csv: `B` was measured in NK cells, not in `B cells`");
        assert_eq!(e(r#"{"split": {"mode": "holdout", "holdout": {"pairs": ["B cells|Foo"]}}}"#), "split.holdout.pairs[0]: `B cells|Foo`: no such compound `Foo` in obs.csv (3 compounds: A, B, Dimethyl Sulfoxide)");
        assert_eq!(e(r#"{"cell_types": ["B cells", "NK cell"]}"#), "cell_types[1]: no such cell type `NK cell` in obs.csv; did you mean `NK cells`? (cell types: B cells, NK cells)");
        assert_eq!(e(r#"{"split": {"mode": "holdout", "holdout": {"draw": 2, "cell_types": ["B cells"]}}}"#), "split.holdout.draw: 2 compounds asked, but only 1 (besides the controls) are measured in all of B cells in obs.csv");
        assert_eq!(e(r#"{"filter": {"drop_compounds": ["Dabrafenib"]}}"#), "filter.drop_compounds[0]: no such compound `Dabrafenib` in obs.csv (3 compounds: A, B, Dimethyl Sulfoxide) (a study without positive controls: drop_compounds: [])");
        // A and B have 8 and 7 training cells: the largest is A.
        assert_eq!(e(r#"{"filter": {"drop_compounds": [], "min_cells": 9}}"#), "filter.min_cells: 9 drops every compound: the largest, `A`, has 8 training cells in obs.csv");
        assert_eq!(e(r#"{"de": {"negative_control": "DMSO"}}"#), "de.negative_control: no such compound `DMSO` in obs.csv (3 compounds: A, B, Dimethyl Sulfoxide)");
        assert_eq!(e(r#"{"cell_types": ["B cells", "B cells"]}"#), "cell_types[1]: `B cells` is listed twice (also cell_types[0])");
        let no_control = CellCounts::new([(("B cells".to_string(), DMSO.to_string()), 3), (("NK cells".to_string(), "A".to_string()), 3)], "obs.csv".into());
        assert_eq!(
            check(&config("{}"), Some(&no_control), None).unwrap_err(),
            "cell_types[1]: `NK cells` has no `Dimethyl Sulfoxide` cells (de.negative_control) in obs.csv: its DE has no reference; leave it out of cell_types"
        );
    }

    #[test]
    fn names_are_cut_and_counted() {
        let v: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
        assert_eq!(names(&v, 3, true), "c0, c1, c2, … (10 in all)");
        assert_eq!(names(&v, 3, false), "c0, c1, c2, …");
        assert_eq!(did_you_mean("zz", &v), "");
        assert_eq!(did_you_mean("Nk cells", &["NK cells".to_string()]), "; did you mean `NK cells`?");
    }
}
