//! `id_map.csv`: the (cell type, compound) pairs to predict, with their submission ids.
use crate::error::{Error, Result};
use crate::io::obs::{csv_error, header_indices};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMapRow {
    pub id: i64,
    pub cell_type: String,
    pub sm_name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdMap {
    pub rows: Vec<IdMapRow>,
}

impl IdMap {
    pub fn read(path: &Path) -> Result<Self> {
        Self::read_rows(path, true)
    }

    /// Target pairs to predict (`pgen-predict --targets`): an id_map, or just the pairs
    /// (columns cell_type,sm_name), whose ids are then their rows' order (0, 1, …).
    pub fn read_pairs(path: &Path) -> Result<Self> {
        Self::read_rows(path, false)
    }

    fn read_rows(path: &Path, require_id: bool) -> Result<Self> {
        let mut reader = csv::Reader::from_path(path).map_err(|e| csv_error(path, e))?;
        let headers = reader.headers().map_err(|e| csv_error(path, e))?.clone();
        let has_id = require_id || headers.iter().any(|h| h == "id");
        let idx = if has_id {
            header_indices(path, &headers, &["id", "cell_type", "sm_name"], "columns id,cell_type,sm_name")?
        } else {
            let mut idx = header_indices(path, &headers, &["cell_type", "sm_name"], "columns cell_type,sm_name (and optionally id)")?;
            idx.insert(0, usize::MAX);
            idx
        };
        let (ii, ic, is) = (idx[0], idx[1], idx[2]);
        let mut rows = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (r, record) in reader.records().enumerate() {
            let record = record.map_err(|e| csv_error(path, e))?;
            let row = r as u64 + 1;
            let id = if has_id {
                let raw = record.get(ii).unwrap_or("");
                raw.trim().parse::<i64>().map_err(|_| Error::bad_value(path, row, "id", "an integer id", format!("`{raw}`")))?
            } else {
                r as i64
            };
            if !seen.insert(id) {
                return Err(Error::bad_value(path, row, "id", "unique ids", format!("{id} again")));
            }
            let cell_type = record.get(ic).unwrap_or("").to_string();
            let sm_name = record.get(is).unwrap_or("").to_string();
            if cell_type.is_empty() || sm_name.is_empty() {
                return Err(Error::bad_value(path, row, if cell_type.is_empty() { "cell_type" } else { "sm_name" }, "a value", "an empty field"));
            }
            rows.push(IdMapRow { id, cell_type, sm_name });
        }
        Ok(Self { rows })
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        crate::atomic::write_atomic(path, |w| {
            let mut out = csv::Writer::from_writer(w);
            out.write_record(["id", "cell_type", "sm_name"])?;
            for r in &self.rows {
                out.write_record([r.id.to_string().as_str(), &r.cell_type, &r.sm_name])?;
            }
            out.flush()?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn pairs_without_ids_take_their_row_order_and_an_id_map_keeps_its_ids() {
        let dir = tempfile::tempdir().unwrap();
        let pairs = IdMap::read_pairs(&write(dir.path(), "p.csv", "sm_name,cell_type\nA,NK cells\nB,B cells\n")).unwrap();
        let got: Vec<_> = pairs.rows.iter().map(|r| (r.id, r.cell_type.as_str(), r.sm_name.as_str())).collect();
        assert_eq!(got, [(0, "NK cells", "A"), (1, "B cells", "B")]);
        let with_ids = IdMap::read_pairs(&write(dir.path(), "i.csv", "id,cell_type,sm_name\n7,NK cells,A\n")).unwrap();
        assert_eq!(with_ids.rows[0].id, 7);
        // An id_map proper still needs its ids.
        let e = IdMap::read(&write(dir.path(), "n.csv", "cell_type,sm_name\nNK cells,A\n")).unwrap_err().to_string();
        assert!(e.contains("missing required column `id`"), "{e}");
        let e = IdMap::read_pairs(&write(dir.path(), "e.csv", "cell_type,compound\nNK cells,A\n")).unwrap_err().to_string();
        assert!(e.contains("`sm_name`") && e.contains("cell_type,sm_name (and optionally id)"), "{e}");
    }
}
