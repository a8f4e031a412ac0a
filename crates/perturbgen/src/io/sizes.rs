//! The size table of the generative route (`pgen-sizes` → `pgen-generate`): per cell group
//! (cell type × plate × well) its metadata, how many cells it has and the median per-cell scale
//! (the models' M: max, sum or mean count of a cell). Observed for the measured groups, predicted
//! by the size forests for the target groups. CSV, one row per group.
use crate::cells::Cells;
use crate::error::{Error, Result};
use crate::io::obs::{csv_error, header_indices};
use crate::pseudobulk::GroupKey;
use std::collections::BTreeMap;
use std::path::Path;

/// Which per-cell statistic a group's `scale` is the median of (the models' `scale` setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CellScale {
    /// The cell's largest count (the write-up's M).
    #[default]
    Max,
    /// The cell's total count.
    Sum,
    /// The cell's mean count over genes.
    Mean,
}

impl CellScale {
    /// The statistic of cell `i` of `cells` (at least 1, as the models take it).
    pub fn of_cell(self, cells: &Cells, i: usize) -> f64 {
        let (_, data) = cells.counts.row(i);
        let v = match self {
            Self::Max => data.iter().copied().max().unwrap_or(0) as f64,
            Self::Sum => data.iter().map(|&d| d as f64).sum(),
            Self::Mean => data.iter().map(|&d| d as f64).sum::<f64>() / cells.counts.n_genes().max(1) as f64,
        };
        v.max(1.0)
    }
}

/// One group: its metadata, cell count and median per-cell scale, and whether those were
/// measured (a target cell type's negative-control wells) or predicted (the target groups).
#[derive(Debug, Clone, PartialEq)]
pub struct SizeRow {
    pub key: GroupKey,
    pub n_cells: f64,
    pub scale: f64,
    pub observed: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SizeTable {
    pub rows: Vec<SizeRow>,
}

const COLUMNS: [&str; 11] = ["cell_type", "sm_name", "plate_name", "well", "donor_id", "row", "sm_lincs_id", "SMILES", "n_cells", "scale", "source"];

impl SizeTable {
    /// The measured groups of `cells` (ordered by cell type, plate, well), leaving out the
    /// groups of `excluded` compounds (the controls: their wells are not compound wells).
    pub fn observed(cells: &Cells, scale: CellScale, excluded: &[String]) -> Self {
        let o = &cells.obs;
        let mut groups: BTreeMap<(&str, &str, &str), (usize, Vec<f64>)> = BTreeMap::new();
        for i in 0..o.len() {
            if excluded.iter().any(|e| e == o.sm_name.get(i)) {
                continue;
            }
            let entry = groups.entry((o.cell_type.get(i), o.plate_name.get(i), o.well.get(i))).or_insert((i, Vec::new()));
            entry.1.push(scale.of_cell(cells, i));
        }
        let rows = groups
            .into_values()
            .map(|(first, mut scales)| SizeRow {
                key: GroupKey::of_cell(o, first),
                n_cells: scales.len() as f64,
                scale: crate::stats::median(&mut scales),
                observed: true,
            })
            .collect();
        Self { rows }
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        crate::atomic::write_atomic(path, |w| {
            let mut out = csv::Writer::from_writer(w);
            out.write_record(COLUMNS)?;
            for r in &self.rows {
                let k = &r.key;
                let source = if r.observed { "observed" } else { "predicted" };
                out.write_record([&k.cell_type, &k.sm_name, &k.plate_name, &k.well, &k.donor_id, &k.row, &k.sm_lincs_id, &k.smiles, &r.n_cells.to_string(), &r.scale.to_string(), source])?;
            }
            out.flush()?;
            Ok(())
        })
    }

    pub fn read(path: &Path) -> Result<Self> {
        let file = crate::atomic::open_input(path)?;
        let mut reader = csv::Reader::from_reader(file);
        let headers = reader.headers().map_err(|e| csv_error(path, e))?.clone();
        let idx = header_indices(path, &headers, &COLUMNS, "a size table (pgen-sizes output)")?;
        let mut rows = Vec::new();
        for (r, record) in reader.records().enumerate() {
            let record = record.map_err(|e| csv_error(path, e))?;
            let row = r as u64 + 1;
            let text = |k: usize| -> Result<String> {
                let v = record.get(idx[k]).unwrap_or("");
                if v.is_empty() && k < 6 {
                    return Err(Error::bad_value(path, row, COLUMNS[k], "a value", "an empty field"));
                }
                Ok(v.to_string())
            };
            let number = |k: usize, min: f64| -> Result<f64> {
                let raw = record.get(idx[k]).unwrap_or("");
                raw.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v >= min)
                    .ok_or_else(|| Error::bad_value(path, row, COLUMNS[k], format!("a finite number ≥ {min}"), format!("`{raw}`")))
            };
            rows.push(SizeRow {
                key: GroupKey {
                    cell_type: text(0)?,
                    sm_name: text(1)?,
                    plate_name: text(2)?,
                    well: text(3)?,
                    donor_id: text(4)?,
                    row: text(5)?,
                    sm_lincs_id: text(6)?,
                    smiles: text(7)?,
                    control: false,
                },
                n_cells: number(8, 1.0)?,
                scale: number(9, 1.0)?,
                observed: match record.get(idx[10]).unwrap_or("") {
                    "observed" => true,
                    "predicted" => false,
                    other => return Err(Error::bad_value(path, row, "source", "observed or predicted", format!("`{other}`"))),
                },
            });
        }
        if rows.is_empty() {
            return Err(Error::invalid(path, "no groups"));
        }
        Ok(Self { rows })
    }
}
