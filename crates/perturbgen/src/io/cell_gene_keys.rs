//! (cell, gene) pairs as hash keys, and the excluded pairs as such keys, for the count readers (parquet and h5ad).
use crate::io::excluded::ExcludedIds;
use rustc_hash::{FxHashMap, FxHashSet};

/// One (cell row, gene column) pair as a single key.
pub(crate) fn pair_key(cell: u32, gene: u32) -> u64 {
    ((cell as u64) << 32) | gene as u64
}

/// Excluded pairs as (cell, gene column) keys. `cells` are the data set's cells as (row, name)
/// and a pair applies to every cell of that name (an h5ad's obs_names may repeat; the parquet
/// reader passes its obs_id index, one row per id); `genes` maps a gene to its output column.
/// Pairs naming cells or genes outside this data set cannot occur in it and are only counted in
/// the log.
pub(crate) fn excluded_keys<'a>(excluded: Option<&ExcludedIds>, cells: impl IntoIterator<Item = (u32, &'a str)>, genes: &FxHashMap<&str, u32>) -> FxHashSet<u64> {
    let mut keys = FxHashSet::default();
    let Some(excluded) = excluded.filter(|e| !e.pairs.is_empty()) else {
        return keys;
    };
    let mut by_cell: FxHashMap<&str, Vec<u32>> = FxHashMap::default();
    let mut unmatched = 0usize;
    for (o, g) in &excluded.pairs {
        match genes.get(g.as_str()) {
            Some(&col) => by_cell.entry(o.as_str()).or_default().push(col),
            None => unmatched += 1,
        }
    }
    let mut matched_cells = FxHashSet::default();
    for (i, name) in cells {
        if let Some(cols) = by_cell.get(name) {
            matched_cells.insert(name);
            keys.extend(cols.iter().map(|&c| pair_key(i, c)));
        }
    }
    unmatched += by_cell.iter().filter(|(o, _)| !matched_cells.contains(*o)).map(|(_, c)| c.len()).sum::<usize>();
    if unmatched > 0 {
        log::warn!("{unmatched} excluded (obs_id, gene) pairs name cells or genes not in this data set");
    }
    keys
}
