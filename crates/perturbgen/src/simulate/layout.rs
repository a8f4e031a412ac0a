//! The experiment's design: donors and plates, the 96-well plate map (compound, positive
//! control and DMSO wells), cell types, and which (cell type, compound) pairs are withheld as
//! the test set.
//!
//! As in the real experiment there are two plate layouts, each holding half the compounds at
//! fixed wells; every donor has one plate of each layout, and a sequencing library is one plate
//! row. With the real layout files the compounds, their wells, the gene names, the test pairs
//! (id_map) and the pairs measured in B/Myeloid cells (de_train row keys) are the real ones.
use super::config::SimConfig;
use super::rng::stream;
use crate::error::{Error, Result};
use crate::io::id_map::{IdMap, IdMapRow};
use crate::io::obs::csv_error;
use rand::seq::SliceRandom;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

pub use crate::params::de::DMSO;
pub use crate::params::filter::POSITIVE_CONTROLS;
/// Cell types whose cells of most compounds are withheld (the competition's test cell types).
pub const TEST_CELL_TYPES: [&str; 2] = ["B cells", "Myeloid cells"];
pub const ROWS: [char; 8] = ['A', 'B', 'C', 'D', 'E', 'F', 'G', 'H'];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompoundKind {
    Regular,
    PositiveControl,
    NegativeControl,
}

#[derive(Debug, Clone)]
pub struct Compound {
    pub name: String,
    pub lincs_id: String,
    pub smiles: String,
    pub kind: CompoundKind,
}

#[derive(Debug, Clone)]
pub struct Plate {
    pub name: String,
    pub donor: usize,
    /// Which of the two plate layouts this plate uses.
    pub layout: usize,
}

#[derive(Debug, Clone)]
pub struct Well {
    pub name: String,
    pub row: usize,
    pub col: usize,
    pub compound: usize,
}

#[derive(Debug, Clone)]
pub struct Layout {
    pub genes: Vec<String>,
    pub compounds: Vec<Compound>,
    pub donors: Vec<String>,
    pub plates: Vec<Plate>,
    /// The used wells of each plate layout.
    pub wells: [Vec<Well>; 2],
    pub cell_types: Vec<String>,
    /// The pairs to predict, in id_map order.
    pub id_map: IdMap,
    /// (cell type, compound) pairs whose cells are withheld from training.
    pub withheld: HashSet<(usize, usize)>,
}

impl Layout {
    pub fn compound_index(&self, name: &str) -> Option<usize> {
        self.compounds.iter().position(|c| c.name == name)
    }

    pub fn is_withheld(&self, cell_type: usize, compound: usize) -> bool {
        self.withheld.contains(&(cell_type, compound))
    }

    pub fn build(config: &SimConfig) -> Result<Self> {
        match (&config.layout_dir, config.preset) {
            (Some(dir), _) => Self::from_kaggle_files(config, dir),
            (None, super::config::Preset::Study) => Self::study(config),
            (None, _) => Self::generic(config),
        }
    }

    /// A stimulation study: one plate per donor, every plate with one DMSO well (A1) and one
    /// well per stimulus (A2, A3, …), all in plate row A. The first cell type's first stimulus
    /// is withheld (the id_map); `split.mode: holdout` picks other targets.
    fn study(config: &SimConfig) -> Result<Self> {
        if !(1..=11).contains(&config.n_compounds) {
            return Err(Error::param("simulate.compounds", format!("the study preset takes 1 to 11 stimuli, got {}", config.n_compounds)));
        }
        if config.n_donors < 2 {
            return Err(Error::param("--donors", "limma needs at least 2 control samples per cell type: 2 or more donors"));
        }
        let genes = (0..config.n_genes).map(|g| format!("GENE{:05}", g + 1)).collect();
        let mut compounds: Vec<Compound> = (0..config.n_compounds)
            .map(|k| Compound { name: format!("Stimulus-{}", k + 1), lincs_id: String::new(), smiles: String::new(), kind: CompoundKind::Regular })
            .collect();
        compounds.extend(controls().into_iter().filter(|c| c.kind == CompoundKind::NegativeControl));
        let dmso = compounds.len() - 1;
        let wells = std::iter::once(dmso).chain(0..config.n_compounds).enumerate().map(|(col, compound)| Well { name: well_name(0, col), row: 0, col, compound }).collect();
        let donors: Vec<String> = (0..config.n_donors).map(|d| format!("donor_{d}")).collect();
        let plates = (0..config.n_donors).map(|d| Plate { name: format!("plate_{d}"), donor: d, layout: 0 }).collect();
        let cell_types: Vec<String> = config.cell_types.iter().map(|c| c.name.clone()).collect();
        let withheld = HashSet::from([(0, 0)]);
        let id_map = IdMap { rows: vec![IdMapRow { id: 0, cell_type: cell_types[0].clone(), sm_name: compounds[0].name.clone() }] };
        Ok(Self { genes, compounds, donors, plates, wells: [wells, Vec::new()], cell_types, id_map, withheld })
    }

    fn generic(config: &SimConfig) -> Result<Self> {
        if config.n_compounds < 2 || config.n_compounds % 2 != 0 {
            return Err(Error::param("simulate.compounds", format!("must be an even number ≥ 2 (two plate layouts), got {}", config.n_compounds)));
        }
        let per_layout = config.n_compounds / 2;
        let used = per_layout + config.dmso_wells + config.positive_control_wells;
        if used > 96 {
            return Err(Error::Data(format!(
                "{per_layout} compounds + {} DMSO + {} positive-control wells do not fit a 96-well plate",
                config.dmso_wells, config.positive_control_wells
            )));
        }
        if config.measured_in_all_per_layout > per_layout {
            return Err(Error::Data("more compounds measured in every cell type than compounds per layout".into()));
        }
        let genes = (0..config.n_genes).map(|g| format!("GENE{:05}", g + 1)).collect();
        let mut compounds: Vec<Compound> = (0..config.n_compounds)
            .map(|k| Compound {
                name: format!("Compound-{:03}", k + 1),
                lincs_id: format!("LSM-SIM{:04}", k + 1),
                smiles: format!("C{}(=O)N", "C".repeat(k % 7 + 1)) + &"O".repeat(k / 7),
                kind: CompoundKind::Regular,
            })
            .collect();
        compounds.extend(controls());
        let cell_types: Vec<String> = config.cell_types.iter().map(|c| c.name.clone()).collect();
        let mut fixed: [BTreeMap<usize, String>; 2] = Default::default();
        let mut layout_of = HashMap::new();
        for k in 0..config.n_compounds {
            layout_of.insert(k, k % 2);
        }
        let wells = assign_wells(config, &compounds, &layout_of, &mut fixed)?;
        let (donors, plates) = donors_and_plates(config.n_donors, None);
        // The first compounds of each layout are measured in every cell type; the B and Myeloid
        // cells of the rest are the test set.
        let measured: HashSet<usize> =
            (0..config.n_compounds).filter(|k| k / 2 < config.measured_in_all_per_layout).collect();
        // The first `measured_in_all_per_layout` compounds of each layout are measured
        // everywhere: with no more than those there would be no test pair (an empty id_map,
        // which the workflow would only notice as "the hold-out is empty").
        let fewest = 2 * config.measured_in_all_per_layout + 2;
        if config.n_compounds < fewest {
            return Err(Error::param(
                "simulate.compounds",
                format!("{} compounds are all measured in every cell type, leaving no test pair: this preset needs at least {fewest}", config.n_compounds),
            ));
        }
        let mut id_map = IdMap::default();
        let mut withheld = HashSet::new();
        for name in TEST_CELL_TYPES {
            let Some(t) = cell_types.iter().position(|c| c == name) else { continue };
            for k in (0..config.n_compounds).filter(|k| !measured.contains(k)) {
                withheld.insert((t, k));
                id_map.rows.push(IdMapRow { id: id_map.rows.len() as i64, cell_type: name.to_string(), sm_name: compounds[k].name.clone() });
            }
        }
        Ok(Self { genes, compounds, donors, plates, wells, cell_types, id_map, withheld })
    }

    fn from_kaggle_files(config: &SimConfig, dir: &Path) -> Result<Self> {
        let genes = crate::io::genes::read_gene_list(&dir.join("genes.txt"))?;
        let rows_path = dir.join("de_train_rows.csv");
        let mut compounds: Vec<Compound> = Vec::new();
        let mut measured_pairs: HashSet<(String, String)> = HashSet::new();
        let mut reader = csv::Reader::from_path(&rows_path).map_err(|e| csv_error(&rows_path, e))?;
        for record in reader.deserialize::<HashMap<String, String>>() {
            let r = record.map_err(|e| csv_error(&rows_path, e))?;
            let get = |k: &str| r.get(k).cloned().ok_or_else(|| Error::MissingColumn { path: rows_path.clone(), column: k.into(), expected: "cell_type,sm_name,sm_lincs_id,SMILES,control".into() });
            let name = get("sm_name")?;
            measured_pairs.insert((get("cell_type")?, name.clone()));
            if !compounds.iter().any(|c| c.name == name) {
                let kind = if POSITIVE_CONTROLS.contains(&name.as_str()) { CompoundKind::PositiveControl } else { CompoundKind::Regular };
                compounds.push(Compound { name, lincs_id: get("sm_lincs_id")?, smiles: get("SMILES")?, kind });
            }
        }
        // Regular compounds first, then the controls (as in the generic layout).
        compounds.sort_by_key(|c| c.kind != CompoundKind::Regular);
        let n_regular = compounds.iter().filter(|c| c.kind == CompoundKind::Regular).count();
        compounds.retain(|c| c.kind == CompoundKind::Regular);
        compounds.extend(controls().into_iter().filter(|c| c.kind != CompoundKind::Regular));
        let id_map = IdMap::read(&dir.join("id_map.csv"))?;

        // Where each test compound sits: its plate group and well.
        let wells_path = dir.join("test_pair_wells_and_sizes.csv");
        let mut reader = csv::Reader::from_path(&wells_path).map_err(|e| csv_error(&wells_path, e))?;
        let mut seen: HashMap<String, (String, String)> = HashMap::new();
        let mut plate_names = HashSet::new();
        for record in reader.deserialize::<HashMap<String, String>>() {
            let r = record.map_err(|e| csv_error(&wells_path, e))?;
            let (Some(p), Some(w), Some(n)) = (r.get("plate_name"), r.get("well"), r.get("sm_name")) else {
                return Err(Error::MissingColumn { path: wells_path.clone(), column: "plate_name/well/sm_name".into(), expected: "the test wells layout".into() });
            };
            plate_names.insert(p.clone());
            seen.entry(n.clone()).or_insert((p.clone(), w.clone()));
        }
        // Plates sharing compounds form a layout: in the real data {0,4,5} and {1,2,3}.
        let mut groups: Vec<HashSet<String>> = Vec::new();
        {
            let mut by_compound: HashMap<String, HashSet<String>> = HashMap::new();
            let mut reader = csv::Reader::from_path(&wells_path).map_err(|e| csv_error(&wells_path, e))?;
            for record in reader.deserialize::<HashMap<String, String>>() {
                let r = record.map_err(|e| csv_error(&wells_path, e))?;
                by_compound.entry(r["sm_name"].clone()).or_default().insert(r["plate_name"].clone());
            }
            for plates in by_compound.values() {
                match groups.iter_mut().find(|g| !g.is_disjoint(plates)) {
                    Some(g) => g.extend(plates.iter().cloned()),
                    None => groups.push(plates.clone()),
                }
            }
        }
        if groups.len() != 2 {
            return Err(Error::invalid(&wells_path, format!("expected plates in two layout groups, found {}", groups.len())));
        }
        let mut group_plates: Vec<Vec<String>> = groups.into_iter().map(|g| { let mut v: Vec<_> = g.into_iter().collect(); v.sort(); v }).collect();
        group_plates.sort();
        let group_of_plate = |p: &str| group_plates.iter().position(|g| g.iter().any(|x| x == p));
        let mut fixed: [BTreeMap<usize, String>; 2] = Default::default();
        let mut layout_of = HashMap::new();
        for (name, (plate, well)) in &seen {
            let Some(k) = compounds.iter().position(|c| &c.name == name) else { continue };
            let layout = group_of_plate(plate).expect("plate is in a group");
            layout_of.insert(k, layout);
            fixed[layout].insert(k, well.clone());
        }
        // Compounds without a known well go to the layout with room.
        for k in 0..n_regular {
            if !layout_of.contains_key(&k) {
                let count = |l: usize| layout_of.values().filter(|&&v| v == l).count();
                let l = if count(0) <= count(1) { 0 } else { 1 };
                layout_of.insert(k, l);
            }
        }
        let wells = assign_wells(config, &compounds, &layout_of, &mut fixed)?;
        let (donors, plates) = donors_and_plates(config.n_donors, Some(&group_plates));
        let cell_types: Vec<String> = config.cell_types.iter().map(|c| c.name.clone()).collect();
        let mut withheld = HashSet::new();
        for name in TEST_CELL_TYPES {
            let Some(t) = cell_types.iter().position(|c| c == name) else { continue };
            for (k, c) in compounds.iter().enumerate() {
                if c.kind == CompoundKind::Regular && !measured_pairs.contains(&(name.to_string(), c.name.clone())) {
                    withheld.insert((t, k));
                }
            }
        }
        for (i, row) in id_map.rows.iter().enumerate() {
            let known = cell_types.iter().position(|c| *c == row.cell_type).zip(compounds.iter().position(|c| c.name == row.sm_name));
            if known.is_none_or(|(t, k)| !withheld.contains(&(t, k))) {
                return Err(Error::bad_value(dir.join("id_map.csv"), i as u64 + 1, "sm_name", "a compound of de_train_rows.csv not measured in this cell type", format!("`{}`", row.sm_name)));
            }
        }
        Ok(Self { genes, compounds, donors, plates, wells, cell_types, id_map, withheld })
    }
}

fn controls() -> Vec<Compound> {
    vec![
        Compound {
            name: POSITIVE_CONTROLS[0].into(),
            lincs_id: "LSM-6303".into(),
            smiles: "CC(C)(C)c1nc(-c2cccc(NS(=O)(=O)c3c(F)cccc3F)c2F)c(-c2ccnc(N)n2)s1".into(),
            kind: CompoundKind::PositiveControl,
        },
        Compound {
            name: POSITIVE_CONTROLS[1].into(),
            lincs_id: "LSM-43181".into(),
            smiles: "O=C(/C=C/c1cccc(S(=O)(=O)Nc2ccccc2)c1)NO".into(),
            kind: CompoundKind::PositiveControl,
        },
        Compound { name: DMSO.into(), lincs_id: "LSM-36361".into(), smiles: "CS(C)=O".into(), kind: CompoundKind::NegativeControl },
    ]
}

fn well_name(row: usize, col: usize) -> String {
    format!("{}{}", ROWS[row], col + 1)
}

fn parse_well(name: &str) -> Option<(usize, usize)> {
    let mut chars = name.chars();
    let first = chars.next()?;
    let row = ROWS.iter().position(|&r| r == first)?;
    let col: usize = chars.as_str().parse().ok()?;
    (1..=12).contains(&col).then_some((row, col - 1))
}

/// Places compounds with a known well there, then the controls spread over the plate rows
/// (DMSO in every row where possible, as on a real plate map, so that the row — the sequencing
/// library — can be told apart from the compound), then the remaining compounds in a seeded
/// shuffle of the free wells.
fn assign_wells(
    config: &SimConfig,
    compounds: &[Compound],
    layout_of: &HashMap<usize, usize>,
    fixed: &mut [BTreeMap<usize, String>; 2],
) -> Result<[Vec<Well>; 2]> {
    let mut out: [Vec<Well>; 2] = Default::default();
    for (layout, wells) in out.iter_mut().enumerate() {
        let mut taken = HashSet::new();
        for (&k, name) in &fixed[layout] {
            let (row, col) = parse_well(name).ok_or_else(|| Error::Data(format!("bad well name `{name}`")))?;
            if !taken.insert((row, col)) {
                return Err(Error::Data(format!("well {name} given to two compounds")));
            }
            wells.push(Well { name: name.clone(), row, col, compound: k });
        }
        let mut free: Vec<(usize, usize)> = (0..8).flat_map(|r| (0..12).map(move |c| (r, c))).filter(|rc| !taken.contains(rc)).collect();
        free.shuffle(&mut stream(config.seed, super::rng::Purpose::Layout, layout as u64));
        let mut place = |k: usize, row: Option<usize>, wells: &mut Vec<Well>| -> Result<()> {
            let at = row.and_then(|r| free.iter().rposition(|w| w.0 == r)).or(free.len().checked_sub(1));
            let (row, col) = free.remove(at.ok_or_else(|| Error::Data(format!("plate layout {layout} has no free well left")))?);
            wells.push(Well { name: well_name(row, col), row, col, compound: k });
            Ok(())
        };
        let idx = |name: &str| compounds.iter().position(|c| c.name == name).expect("controls are listed");
        for i in 0..config.dmso_wells {
            place(idx(DMSO), Some(i % 8), wells)?;
        }
        for i in 0..config.positive_control_wells {
            place(idx(POSITIVE_CONTROLS[i % 2]), Some((i / 2 + 4) % 8), wells)?;
        }
        let mut regular: Vec<usize> = layout_of.iter().filter(|(k, &l)| l == layout && !fixed[layout].contains_key(k)).map(|(&k, _)| k).collect();
        regular.sort_unstable();
        for k in regular {
            place(k, None, wells)?;
        }
        wells.sort_by_key(|w| (w.row, w.col));
    }
    Ok(out)
}

/// Donor d gets the d-th plate of each layout.
fn donors_and_plates(n_donors: usize, named: Option<&Vec<Vec<String>>>) -> (Vec<String>, Vec<Plate>) {
    let donors: Vec<String> = (0..n_donors).map(|d| format!("donor_{d}")).collect();
    let mut plates = Vec::new();
    for d in 0..n_donors {
        for layout in 0..2 {
            let name = match named {
                Some(groups) if d < groups[layout].len() => groups[layout][d].clone(),
                _ => format!("plate_{}", 2 * d + layout),
            };
            plates.push(Plate { name, donor: d, layout });
        }
    }
    plates.sort_by(|a, b| a.name.cmp(&b.name));
    (donors, plates)
}
