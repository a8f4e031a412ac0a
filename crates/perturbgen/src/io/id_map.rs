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
