//! `adata_excluded_ids.csv`: (obs_id, gene) pairs to drop before anything else.
use crate::error::{Error, Result};
use crate::io::obs::{csv_error, header_indices};
use std::path::Path;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExcludedIds {
    pub pairs: Vec<(String, String)>,
}

impl ExcludedIds {
    pub fn read(path: &Path) -> Result<Self> {
        let mut reader = csv::Reader::from_path(path).map_err(|e| csv_error(path, e))?;
        let headers = reader.headers().map_err(|e| csv_error(path, e))?.clone();
        let idx = header_indices(path, &headers, &["obs_id", "gene"], "columns obs_id,gene")?;
        let (io, ig) = (idx[0], idx[1]);
        let mut pairs = Vec::new();
        for (row, record) in reader.records().enumerate() {
            let record = record.map_err(|e| csv_error(path, e))?;
            let (o, g) = (record.get(io).unwrap_or(""), record.get(ig).unwrap_or(""));
            if o.is_empty() || g.is_empty() {
                return Err(Error::bad_value(path, row as u64 + 1, if o.is_empty() { "obs_id" } else { "gene" }, "a value", "an empty field"));
            }
            pairs.push((o.to_string(), g.to_string()));
        }
        Ok(Self { pairs })
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        crate::atomic::write_atomic(path, |w| {
            let mut out = csv::Writer::from_writer(w);
            out.write_record(["obs_id", "gene"])?;
            for (o, g) in &self.pairs {
                out.write_record([o, g])?;
            }
            out.flush()?;
            Ok(())
        })
    }
}
