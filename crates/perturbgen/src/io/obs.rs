//! The per-cell metadata table (`adata_obs_meta.csv` in Kaggle's layout; `obs.parquet` as the
//! pipeline's cache).
use crate::categorical::Categorical;
use crate::error::{Error, Result};
use crate::io::arrow_util::{column, to_f64, to_strings};
use crate::io::parquet_util;
use arrow_array::{Array, ArrayRef, BooleanArray, DictionaryArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_array::types::UInt32Type;
use arrow_schema::{DataType, Field, Schema};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// The Kaggle obs columns, in file order.
pub const OBS_COLUMNS: [&str; 15] = [
    "obs_id", "library_id", "plate_name", "well", "row", "col", "cell_id", "donor_id", "cell_type",
    "sm_lincs_id", "sm_name", "SMILES", "dose_uM", "timepoint_hr", "control",
];

/// One cell's metadata, as the simulator produces it.
#[derive(Debug, Clone, PartialEq)]
pub struct CellMeta<'a> {
    pub obs_id: &'a str,
    pub library_id: &'a str,
    pub plate_name: &'a str,
    pub well: &'a str,
    pub row: &'a str,
    pub col: i64,
    pub cell_id: &'a str,
    pub donor_id: &'a str,
    pub cell_type: &'a str,
    pub sm_lincs_id: &'a str,
    pub sm_name: &'a str,
    pub smiles: &'a str,
    pub dose_um: f64,
    pub timepoint_hr: f64,
    pub control: bool,
}

/// Per-cell metadata, one row per cell.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObsTable {
    pub obs_id: Vec<String>,
    pub library_id: Categorical,
    pub plate_name: Categorical,
    pub well: Categorical,
    pub row: Categorical,
    pub col: Vec<i64>,
    pub cell_id: Categorical,
    pub donor_id: Categorical,
    pub cell_type: Categorical,
    pub sm_lincs_id: Categorical,
    pub sm_name: Categorical,
    pub smiles: Categorical,
    pub dose_um: Vec<f64>,
    pub timepoint_hr: Vec<f64>,
    pub control: Vec<bool>,
}

impl ObsTable {
    pub fn len(&self) -> usize {
        self.obs_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.obs_id.is_empty()
    }

    pub fn push(&mut self, c: &CellMeta<'_>) {
        self.obs_id.push(c.obs_id.to_string());
        self.library_id.push(c.library_id);
        self.plate_name.push(c.plate_name);
        self.well.push(c.well);
        self.row.push(c.row);
        self.col.push(c.col);
        self.cell_id.push(c.cell_id);
        self.donor_id.push(c.donor_id);
        self.cell_type.push(c.cell_type);
        self.sm_lincs_id.push(c.sm_lincs_id);
        self.sm_name.push(c.sm_name);
        self.smiles.push(c.smiles);
        self.dose_um.push(c.dose_um);
        self.timepoint_hr.push(c.timepoint_hr);
        self.control.push(c.control);
    }

    pub fn cell(&self, i: usize) -> CellMeta<'_> {
        CellMeta {
            obs_id: &self.obs_id[i],
            library_id: self.library_id.get(i),
            plate_name: self.plate_name.get(i),
            well: self.well.get(i),
            row: self.row.get(i),
            col: self.col[i],
            cell_id: self.cell_id.get(i),
            donor_id: self.donor_id.get(i),
            cell_type: self.cell_type.get(i),
            sm_lincs_id: self.sm_lincs_id.get(i),
            sm_name: self.sm_name.get(i),
            smiles: self.smiles.get(i),
            dose_um: self.dose_um[i],
            timepoint_hr: self.timepoint_hr[i],
            control: self.control[i],
        }
    }

    /// The rows `rows`, in that order.
    pub fn take(&self, rows: &[usize]) -> Self {
        Self {
            obs_id: rows.iter().map(|&r| self.obs_id[r].clone()).collect(),
            library_id: self.library_id.take(rows),
            plate_name: self.plate_name.take(rows),
            well: self.well.take(rows),
            row: self.row.take(rows),
            col: rows.iter().map(|&r| self.col[r]).collect(),
            cell_id: self.cell_id.take(rows),
            donor_id: self.donor_id.take(rows),
            cell_type: self.cell_type.take(rows),
            sm_lincs_id: self.sm_lincs_id.take(rows),
            sm_name: self.sm_name.take(rows),
            smiles: self.smiles.take(rows),
            dose_um: rows.iter().map(|&r| self.dose_um[r]).collect(),
            timepoint_hr: rows.iter().map(|&r| self.timepoint_hr[r]).collect(),
            control: rows.iter().map(|&r| self.control[r]).collect(),
        }
    }

    /// obs_id → row; refuses duplicates.
    pub fn index(&self, path: &Path) -> Result<HashMap<&str, u32>> {
        let mut map = HashMap::with_capacity(self.len());
        for (i, id) in self.obs_id.iter().enumerate() {
            if map.insert(id.as_str(), i as u32).is_some() {
                return Err(Error::bad_value(path, i as u64 + 1, "obs_id", "unique cell ids", format!("`{id}` again")));
            }
        }
        Ok(map)
    }

    /// Heap bytes held (for memory accounting).
    pub fn heap_bytes(&self) -> usize {
        let ids: usize = self.obs_id.iter().map(|s| s.capacity() + std::mem::size_of::<String>()).sum();
        ids + [
            &self.library_id, &self.plate_name, &self.well, &self.row, &self.cell_id, &self.donor_id,
            &self.cell_type, &self.sm_lincs_id, &self.sm_name, &self.smiles,
        ]
        .iter()
        .map(|c| c.heap_bytes())
        .sum::<usize>()
            + self.len() * (8 + 8 + 8 + 1)
    }

    /// Reads `adata_obs_meta.csv` (or a `.parquet` with the same columns). Extra columns are
    /// ignored; missing ones, unparsable numbers and duplicate ids are errors.
    pub fn read(path: &Path) -> Result<Self> {
        let is_parquet = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet"));
        let obs = if is_parquet { Self::read_parquet(path)? } else { Self::read_csv(path)? };
        obs.index(path)?;
        Ok(obs)
    }

    fn read_csv(path: &Path) -> Result<Self> {
        let mut reader = csv::ReaderBuilder::new()
            .from_path(path)
            .map_err(|e| csv_error(path, e))?;
        let headers = reader.headers().map_err(|e| csv_error(path, e))?.clone();
        let idx = header_indices(path, &headers, &OBS_COLUMNS, &format!("the Kaggle obs columns {}", OBS_COLUMNS.join(",")))?;
        let mut obs = ObsTable::default();
        let mut record = csv::StringRecord::new();
        let mut row = 0u64;
        while reader.read_record(&mut record).map_err(|e| csv_error(path, e))? {
            row += 1;
            let f = |k: usize| record.get(idx[k]).unwrap_or("");
            let num = |k: usize| -> Result<f64> {
                f(k).trim().parse::<f64>().map_err(|_| Error::bad_value(path, row, OBS_COLUMNS[k], "a number", format!("`{}`", f(k))))
            };
            let col = f(5).trim().parse::<f64>().ok().filter(|v| v.fract() == 0.0).ok_or_else(|| {
                Error::bad_value(path, row, "col", "a whole number", format!("`{}`", f(5)))
            })? as i64;
            let control = parse_bool(f(14)).ok_or_else(|| Error::bad_value(path, row, "control", "True or False", format!("`{}`", f(14))))?;
            if f(0).is_empty() {
                return Err(Error::bad_value(path, row, "obs_id", "a cell id", "an empty field"));
            }
            obs.push(&CellMeta {
                obs_id: f(0),
                library_id: f(1),
                plate_name: f(2),
                well: f(3),
                row: f(4),
                col,
                cell_id: f(6),
                donor_id: f(7),
                cell_type: f(8),
                sm_lincs_id: f(9),
                sm_name: f(10),
                smiles: f(11),
                dose_um: num(12)?,
                timepoint_hr: num(13)?,
                control,
            });
        }
        Ok(obs)
    }

    fn read_parquet(path: &Path) -> Result<Self> {
        let (_, batches) = parquet_util::read_all(path)?;
        let mut obs = ObsTable::default();
        let expected = "the Kaggle obs columns";
        let mut row0 = 0u64;
        for batch in &batches {
            let s = |k: usize| -> Result<StringArray> { to_strings(path, OBS_COLUMNS[k], column(path, batch, OBS_COLUMNS[k], expected)?) };
            let n = |k: usize| -> Result<Float64Array> { to_f64(path, OBS_COLUMNS[k], column(path, batch, OBS_COLUMNS[k], expected)?) };
            let strings: Vec<StringArray> = [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11].iter().map(|&k| s(k)).collect::<Result<_>>()?;
            let (col, dose, time, control) = (n(5)?, n(12)?, n(13)?, n(14)?);
            for i in 0..batch.num_rows() {
                let row = row0 + i as u64 + 1;
                let text = |j: usize| strings[j].value(i);
                let number = |a: &Float64Array, k: usize| -> Result<f64> {
                    if a.is_null(i) {
                        Err(Error::bad_value(path, row, OBS_COLUMNS[k], "a number", "null"))
                    } else {
                        Ok(a.value(i))
                    }
                };
                obs.push(&CellMeta {
                    obs_id: text(0),
                    library_id: text(1),
                    plate_name: text(2),
                    well: text(3),
                    row: text(4),
                    col: number(&col, 5)? as i64,
                    cell_id: text(5),
                    donor_id: text(6),
                    cell_type: text(7),
                    sm_lincs_id: text(8),
                    sm_name: text(9),
                    smiles: text(10),
                    dose_um: number(&dose, 12)?,
                    timepoint_hr: number(&time, 13)?,
                    control: number(&control, 14)? != 0.0,
                });
            }
            row0 += batch.num_rows() as u64;
        }
        Ok(obs)
    }

    /// Writes the Kaggle CSV layout (`True`/`False` for control, as pandas writes it).
    pub fn write_csv(&self, path: &Path) -> Result<()> {
        crate::atomic::write_atomic(path, |w| {
            let mut out = csv::Writer::from_writer(w);
            out.write_record(OBS_COLUMNS)?;
            for i in 0..self.len() {
                let c = self.cell(i);
                out.write_record([
                    c.obs_id, c.library_id, c.plate_name, c.well, c.row, &c.col.to_string(), c.cell_id,
                    c.donor_id, c.cell_type, c.sm_lincs_id, c.sm_name, c.smiles, &fmt_float(c.dose_um),
                    &fmt_float(c.timepoint_hr), if c.control { "True" } else { "False" },
                ])?;
            }
            out.flush()?;
            Ok(())
        })
    }

    /// Writes the pipeline's cached obs table: the same columns, repeated strings as
    /// dictionaries (pandas reads them as `category`).
    pub fn write_parquet(&self, path: &Path) -> Result<()> {
        let dict = |c: &Categorical| -> ArrayRef {
            let keys = arrow_array::UInt32Array::from(c.codes().to_vec());
            let values = StringArray::from_iter_values(c.levels().iter());
            Arc::new(DictionaryArray::<UInt32Type>::try_new(keys, Arc::new(values)).expect("codes index levels"))
        };
        let dict_type = DataType::Dictionary(Box::new(DataType::UInt32), Box::new(DataType::Utf8));
        let mut fields = Vec::new();
        let mut columns: Vec<ArrayRef> = Vec::new();
        for name in OBS_COLUMNS {
            let (dtype, array): (DataType, ArrayRef) = match name {
                "obs_id" => (DataType::Utf8, Arc::new(StringArray::from_iter_values(self.obs_id.iter()))),
                "library_id" => (dict_type.clone(), dict(&self.library_id)),
                "plate_name" => (dict_type.clone(), dict(&self.plate_name)),
                "well" => (dict_type.clone(), dict(&self.well)),
                "row" => (dict_type.clone(), dict(&self.row)),
                "col" => (DataType::Int64, Arc::new(Int64Array::from(self.col.clone()))),
                "cell_id" => (dict_type.clone(), dict(&self.cell_id)),
                "donor_id" => (dict_type.clone(), dict(&self.donor_id)),
                "cell_type" => (dict_type.clone(), dict(&self.cell_type)),
                "sm_lincs_id" => (dict_type.clone(), dict(&self.sm_lincs_id)),
                "sm_name" => (dict_type.clone(), dict(&self.sm_name)),
                "SMILES" => (dict_type.clone(), dict(&self.smiles)),
                "dose_uM" => (DataType::Float64, Arc::new(Float64Array::from(self.dose_um.clone()))),
                "timepoint_hr" => (DataType::Float64, Arc::new(Float64Array::from(self.timepoint_hr.clone()))),
                "control" => (DataType::Boolean, Arc::new(BooleanArray::from(self.control.clone()))),
                _ => unreachable!("OBS_COLUMNS is fixed"),
            };
            fields.push(Field::new(name, dtype, false));
            columns.push(array);
        }
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| Error::arrow(path, e))?;
        parquet_util::write_batch(path, &batch, vec![])
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim() {
        "True" | "true" | "TRUE" | "1" | "1.0" => Some(true),
        "False" | "false" | "FALSE" | "0" | "0.0" => Some(false),
        _ => None,
    }
}

/// Floats as pandas prints them in CSV (`1.0`, `0.1`).
pub fn fmt_float(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

/// Positions of the named columns in a CSV header, or the missing-column error.
pub fn header_indices(path: &Path, headers: &csv::StringRecord, names: &[&str], expected: &str) -> Result<Vec<usize>> {
    names
        .iter()
        .map(|name| {
            headers.iter().position(|h| h == *name).ok_or_else(|| Error::MissingColumn {
                path: path.to_path_buf(),
                column: name.to_string(),
                expected: expected.to_string(),
            })
        })
        .collect()
}

pub fn csv_error(path: &Path, e: csv::Error) -> Error {
    let line = e.position().map(|p| p.line()).unwrap_or(0);
    match e.into_kind() {
        csv::ErrorKind::Io(io) => Error::io(path, io),
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => Error::Csv {
            path: path.to_path_buf(),
            line,
            message: format!("expected {expected_len} fields, found {len}"),
        },
        csv::ErrorKind::Utf8 { err, .. } => Error::Csv { path: path.to_path_buf(), line, message: format!("not UTF-8 ({err})") },
        other => Error::Csv { path: path.to_path_buf(), line, message: format!("{other:?}") },
    }
}
