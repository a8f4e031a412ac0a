//! A cell type's own negative-control size, the baseline of `sizes.relative_to_controls`: for a
//! group (cell type, plate, donor) the geometric mean, over that cell type's control wells on
//! the same plate, of their cell counts and of their median scales; where the cell type has no
//! control well on that plate, over its control wells of the same donor; else over all its
//! control wells. Geometric, because the forests learn log ratios to it.
use perturbgen::io::id_map::IdMap;
use perturbgen::io::sizes::{SizeRow, SizeTable};
use perturbgen::pseudobulk::GroupKey;
use std::collections::BTreeMap;
use std::path::Path;

/// Which control wells a baseline was taken from (the first that exists, in this order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ControlMatch {
    /// The cell type's control wells on the group's plate.
    Plate,
    /// None on that plate: its control wells of the group's donor.
    Donor,
    /// None of that donor either: all its control wells.
    CellType,
}

/// A baseline: cells per control well and their median scale (geometric means), and where from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ControlSize {
    pub n_cells: f64,
    pub scale: f64,
    pub matched: ControlMatch,
}

/// The negative-control wells per cell type (measured groups of the negative control).
#[derive(Debug, Clone, Default)]
pub struct ControlSizes {
    by_cell_type: BTreeMap<String, Vec<SizeRow>>,
}

impl ControlSizes {
    /// From the measured groups of the negative control (rows of other compounds are ignored).
    pub fn new(measured: &SizeTable, negative_control: &str) -> Self {
        let mut by_cell_type: BTreeMap<String, Vec<SizeRow>> = BTreeMap::new();
        for r in measured.rows.iter().filter(|r| r.key.sm_name == negative_control) {
            by_cell_type.entry(r.key.cell_type.clone()).or_default().push(r.clone());
        }
        Self { by_cell_type }
    }

    pub fn n_wells(&self) -> usize {
        self.by_cell_type.values().map(Vec::len).sum()
    }

    /// The baseline of `key`'s cell type for its plate (falling back to its donor, then to all
    /// its control wells); None when the cell type has no control well at all.
    pub fn baseline(&self, key: &GroupKey) -> Option<ControlSize> {
        let wells = self.by_cell_type.get(&key.cell_type)?;
        let same = |matched: ControlMatch, r: &SizeRow| match matched {
            ControlMatch::Plate => r.key.plate_name == key.plate_name,
            ControlMatch::Donor => r.key.donor_id == key.donor_id,
            ControlMatch::CellType => true,
        };
        [ControlMatch::Plate, ControlMatch::Donor, ControlMatch::CellType].into_iter().find_map(|matched| {
            let chosen: Vec<&SizeRow> = wells.iter().filter(|r| same(matched, r)).collect();
            (!chosen.is_empty()).then(|| ControlSize {
                n_cells: geometric_mean(chosen.iter().map(|r| r.n_cells)),
                scale: geometric_mean(chosen.iter().map(|r| r.scale)),
                matched,
            })
        })
    }

    /// Every target pair's cell type has control wells; else an error naming the id_map row.
    pub fn require_for(&self, targets: &IdMap, targets_path: &Path, negative_control: &str) -> crate::Result<()> {
        for (row, t) in targets.rows.iter().enumerate() {
            if !self.by_cell_type.contains_key(&t.cell_type) {
                return Err(crate::Error::invalid(
                    targets_path,
                    format!(
                        "row {}: cell type `{}` has no `{negative_control}` (negative-control) cells in the training cells, which sizes.relative_to_controls takes its sizes from (set it to false)",
                        row + 1,
                        t.cell_type
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn geometric_mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v.ln(), n + 1));
    (sum / n as f64).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(ct: &str, sm: &str, plate: &str, donor: &str) -> GroupKey {
        let empty = String::new;
        GroupKey { cell_type: ct.into(), sm_name: sm.into(), plate_name: plate.into(), donor_id: donor.into(), well: empty(), row: empty(), sm_lincs_id: empty(), smiles: empty(), control: false }
    }

    fn row(ct: &str, sm: &str, plate: &str, donor: &str, n_cells: f64, scale: f64) -> SizeRow {
        SizeRow { key: group(ct, sm, plate, donor), n_cells, scale, observed: true }
    }

    fn key(ct: &str, plate: &str, donor: &str) -> GroupKey {
        group(ct, "X", plate, donor)
    }

    #[test]
    fn baseline_is_the_plate_then_the_donor_then_every_control_well() {
        let table = SizeTable {
            rows: vec![
                // Two control wells of B cells on p0 (donor d0): geometric means √(100·400) = 200, √(50·200) = 100.
                row("B", "DMSO", "p0", "d0", 100.0, 50.0),
                row("B", "DMSO", "p0", "d0", 400.0, 200.0),
                // One on p1 (donor d1).
                row("B", "DMSO", "p1", "d1", 30.0, 10.0),
                // Not a control well: ignored.
                row("B", "X", "p0", "d0", 1e6, 1e6),
            ],
        };
        let c = ControlSizes::new(&table, "DMSO");
        assert_eq!(c.n_wells(), 3);
        let at = |k: GroupKey| c.baseline(&k).unwrap();
        let p0 = at(key("B", "p0", "d0"));
        assert!((p0.n_cells - 200.0).abs() < 1e-9 && (p0.scale - 100.0).abs() < 1e-9 && p0.matched == ControlMatch::Plate, "{p0:?}");
        // p2 has no B control well; donor d1's is p1's.
        let d1 = at(key("B", "p2", "d1"));
        assert!((d1.n_cells - 30.0).abs() < 1e-9 && (d1.scale - 10.0).abs() < 1e-9 && d1.matched == ControlMatch::Donor, "{d1:?}");
        // Neither the plate nor the donor: all three wells, ∛(100·400·30) and ∛(50·200·10).
        let all = at(key("B", "p9", "d9"));
        assert!((all.n_cells - (100.0f64 * 400.0 * 30.0).cbrt()).abs() < 1e-9, "{all:?}");
        assert!((all.scale - (50.0f64 * 200.0 * 10.0).cbrt()).abs() < 1e-9 && all.matched == ControlMatch::CellType, "{all:?}");
        assert!(c.baseline(&key("NK", "p0", "d0")).is_none());
    }
}
