//! The Kaggle submission CSV: `id`, then one column per gene in de_train order, one row per
//! id_map id.
use crate::error::{Error, Result};
use crate::io::id_map::IdMap;
use std::path::Path;

/// Writes `values` (id_map rows × genes, row-major) as a submission.
pub fn write_submission(path: &Path, id_map: &IdMap, genes: &[String], values: &[f64]) -> Result<()> {
    if values.len() != id_map.rows.len() * genes.len() {
        return Err(Error::invalid(
            path,
            format!("{} values for {} ids × {} genes", values.len(), id_map.rows.len(), genes.len()),
        ));
    }
    if let Some(k) = values.iter().position(|v| !v.is_finite()) {
        let (r, g) = (k / genes.len(), k % genes.len());
        return Err(Error::bad_value(path, r as u64 + 1, &genes[g], "a finite prediction", values[k].to_string()));
    }
    crate::atomic::write_atomic(path, |w| {
        let mut out = csv::Writer::from_writer(w);
        out.write_field("id")?;
        out.write_record(genes)?;
        let mut line = Vec::with_capacity(genes.len() + 1);
        for (r, row) in id_map.rows.iter().enumerate() {
            line.clear();
            line.push(row.id.to_string());
            line.extend(values[r * genes.len()..(r + 1) * genes.len()].iter().map(|v| format!("{v:?}")));
            out.write_record(&line)?;
        }
        out.flush()?;
        Ok(())
    })
}
