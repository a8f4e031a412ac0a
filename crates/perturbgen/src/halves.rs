//! Two halves of the cells of every pseudo-bulk sample (plate × well × cell type), for the noise
//! ceiling: limma on one half's pseudo-bulk "predicts" limma on the other's, which says how well
//! the measurement predicts itself.
//!
//! Within each sample the cells are ordered by a seeded hash of their obs_id and dealt out
//! alternately, so each sample's halves differ by at most one cell and every cell is in exactly
//! one half. Which half gets the odd cell is itself drawn per sample (from the seeded hash of
//! the sample's key), so that the first half is not systematically the larger one. The hash is
//! SHA-256, not `std`'s hasher, so the split is the same on every platform and Rust version.
use crate::io::obs::ObsTable;
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// One of the two halves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Half {
    First,
    Second,
}

impl Half {
    fn index(self) -> usize {
        match self {
            Half::First => 0,
            Half::Second => 1,
        }
    }
}

impl FromStr for Half {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "first" => Ok(Half::First),
            "second" => Ok(Half::Second),
            _ => Err(format!("`{s}`: expected first or second")),
        }
    }
}

impl fmt::Display for Half {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Half::First => "first",
            Half::Second => "second",
        })
    }
}

/// The first 8 bytes of SHA-256(seed ‖ tag ‖ parts joined by NUL), as a number.
fn seeded_hash(seed: u64, tag: u8, parts: &[&str]) -> u64 {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update([tag]);
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update([0u8]);
        }
        h.update(p.as_bytes());
    }
    let digest = h.finalize();
    u64::from_le_bytes(digest[..8].try_into().expect("SHA-256 has 32 bytes"))
}

/// The tags keep a cell's hash and a sample's hash apart even where the strings coincide.
const CELL_TAG: u8 = 0;
const SAMPLE_TAG: u8 = 1;

/// For each cell set (pooled as pgen-pseudobulk pools them: a sample may have cells in several
/// sets), the rows of half `half`, in row order.
pub fn half_rows(sets: &[&ObsTable], half: Half, seed: u64) -> Vec<Vec<usize>> {
    // (sample key, cell hash, set, row): sorted, each sample's cells lie together in hash order;
    // set and row break ties (a repeated obs_id), so the order is total.
    let mut cells: Vec<((&str, &str, &str), u64, usize, usize)> = Vec::with_capacity(sets.iter().map(|o| o.len()).sum());
    for (s, obs) in sets.iter().enumerate() {
        for i in 0..obs.len() {
            let key = (obs.cell_type.get(i), obs.plate_name.get(i), obs.well.get(i));
            cells.push((key, seeded_hash(seed, CELL_TAG, &[&obs.obs_id[i]]), s, i));
        }
    }
    cells.sort_unstable();
    let mut out = vec![Vec::new(); sets.len()];
    let mut start = 0;
    while start < cells.len() {
        let key = cells[start].0;
        let end = start + cells[start..].iter().take_while(|c| c.0 == key).count();
        // Rank r goes to half (r + offset) mod 2: offset decides which half gets the odd cell.
        let offset = (seeded_hash(seed, SAMPLE_TAG, &[key.0, key.1, key.2]) & 1) as usize;
        for (r, &(_, _, s, i)) in cells[start..end].iter().enumerate() {
            if (r + offset) % 2 == half.index() {
                out[s].push(i);
            }
        }
        start = end;
    }
    for rows in &mut out {
        rows.sort_unstable();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::obs::CellMeta;
    use std::collections::{BTreeMap, BTreeSet};

    /// Cells in `samples` (cell type, plate, well, n cells), ids prefixed by `prefix`.
    fn obs(prefix: &str, samples: &[(&str, &str, &str, usize)]) -> ObsTable {
        let mut o = ObsTable::default();
        for (k, &(cell_type, plate, well, n)) in samples.iter().enumerate() {
            for c in 0..n {
                let id = format!("{prefix}{k}_{c}");
                o.push(&CellMeta {
                    obs_id: &id,
                    library_id: "lib",
                    plate_name: plate,
                    well,
                    row: "A",
                    col: 1,
                    cell_id: "c",
                    donor_id: "d",
                    cell_type,
                    sm_lincs_id: "x",
                    sm_name: "X",
                    smiles: "C",
                    dose_um: 1.0,
                    timepoint_hr: 24.0,
                    control: false,
                });
            }
        }
        o
    }

    const SAMPLES: [(&str, &str, &str, usize); 6] =
        [("NK cells", "p1", "A1", 7), ("NK cells", "p1", "A2", 1), ("B cells", "p1", "A1", 10), ("B cells", "p2", "A1", 0), ("T cells", "p2", "B3", 2), ("T cells", "p2", "B4", 33)];

    fn sample_sizes(o: &ObsTable, rows: &[usize]) -> BTreeMap<(String, String, String), usize> {
        let mut m = BTreeMap::new();
        for &i in rows {
            *m.entry((o.cell_type.get(i).to_string(), o.plate_name.get(i).to_string(), o.well.get(i).to_string())).or_insert(0) += 1;
        }
        m
    }

    #[test]
    fn halves_are_disjoint_cover_every_cell_and_differ_by_at_most_one_per_sample() {
        let o = obs("cell", &SAMPLES);
        for seed in [0, 1, 42] {
            let first = half_rows(&[&o], Half::First, seed).remove(0);
            let second = half_rows(&[&o], Half::Second, seed).remove(0);
            let (a, b): (BTreeSet<usize>, BTreeSet<usize>) = (first.iter().copied().collect(), second.iter().copied().collect());
            assert!(a.is_disjoint(&b), "seed {seed}: a cell in both halves");
            assert_eq!(a.len() + b.len(), o.len(), "seed {seed}: a cell in no half");
            assert_eq!(a.union(&b).copied().collect::<Vec<_>>(), (0..o.len()).collect::<Vec<_>>());
            let (sa, sb) = (sample_sizes(&o, &first), sample_sizes(&o, &second));
            let all = sample_sizes(&o, &(0..o.len()).collect::<Vec<_>>());
            for (key, n) in &all {
                let (x, y) = (sa.get(key).copied().unwrap_or(0), sb.get(key).copied().unwrap_or(0));
                assert_eq!(x + y, *n, "{key:?}");
                assert!(x.abs_diff(y) <= 1, "seed {seed}, {key:?}: {x} vs {y} cells");
            }
        }
    }

    #[test]
    fn the_split_is_deterministic_and_the_seed_changes_it() {
        let o = obs("cell", &SAMPLES);
        let a = half_rows(&[&o], Half::First, 0);
        assert_eq!(a, half_rows(&[&o], Half::First, 0));
        // The same cells in another order land in the same halves (the split follows the ids).
        let reversed = o.take(&(0..o.len()).rev().collect::<Vec<_>>());
        let ids = |t: &ObsTable, rows: &[usize]| rows.iter().map(|&i| t.obs_id[i].clone()).collect::<BTreeSet<_>>();
        assert_eq!(ids(&o, &a[0]), ids(&reversed, &half_rows(&[&reversed], Half::First, 0)[0]));
        assert_ne!(a, half_rows(&[&o], Half::First, 1), "seed 1 gave the same halves as seed 0");
        // Pinned (computed from the definition in Python, as tests/python/test_ceiling.py does):
        // a change of hash or dealing would silently change every ceiling.
        assert_eq!(a[0].len(), 27);
        let nk: Vec<&str> = a[0].iter().filter(|&&i| o.cell_type.get(i) == "NK cells").map(|&i| o.obs_id[i].as_str()).collect();
        assert_eq!(nk, ["cell0_2", "cell0_3", "cell0_4", "cell1_0"]);
    }

    #[test]
    fn a_sample_pooled_from_two_sets_is_split_as_one() {
        // The same well's cells in two sets (as train + truth cells are pooled): 5 + 4 cells.
        let x = obs("x", &[("NK cells", "p1", "A1", 5)]);
        let y = obs("y", &[("NK cells", "p1", "A1", 4)]);
        for seed in 0..8 {
            let first = half_rows(&[&x, &y], Half::First, seed);
            let second = half_rows(&[&x, &y], Half::Second, seed);
            let n1 = first[0].len() + first[1].len();
            let n2 = second[0].len() + second[1].len();
            assert_eq!(n1 + n2, 9);
            assert!(n1.abs_diff(n2) == 1, "seed {seed}: {n1} vs {n2}");
        }
    }

    #[test]
    fn the_odd_cell_goes_to_either_half() {
        // Many one-cell samples: the first half must not get all of them.
        let samples: Vec<(String, usize)> = (0..64).map(|k| (format!("W{k}"), 1)).collect();
        let spec: Vec<(&str, &str, &str, usize)> = samples.iter().map(|(w, n)| ("NK cells", "p1", w.as_str(), *n)).collect();
        let o = obs("c", &spec);
        let n_first = half_rows(&[&o], Half::First, 0)[0].len();
        assert!((16..=48).contains(&n_first), "{n_first} of 64 one-cell samples in the first half");
    }

    #[test]
    fn half_names() {
        assert_eq!("first".parse::<Half>(), Ok(Half::First));
        assert_eq!("second".parse::<Half>(), Ok(Half::Second));
        assert!("third".parse::<Half>().unwrap_err().contains("expected first or second"));
        assert_eq!(Half::Second.to_string(), "second");
    }
}
