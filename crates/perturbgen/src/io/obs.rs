//! The per-cell metadata table (`adata_obs_meta.csv` in Kaggle's layout; `obs.parquet` as the
//! pipeline's cache).
use crate::categorical::Categorical;
use crate::error::{Error, Result};
use crate::io::arrow_util::{column, required_strings, to_f64, to_strings};
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

    /// Reads the pipeline's cached `obs.parquet`, or a study's `adata_obs_meta.csv` under the
    /// Kaggle column names (see [`ObsTable::read_with`]).
    pub fn read(path: &Path) -> Result<Self> {
        Self::read_with(path, &ColumnMap::default())
    }

    /// Reads `adata_obs_meta.csv` (CSV; the study's own column names through `columns`) or a
    /// `.parquet` with the Kaggle columns (the pipeline's cache). Extra columns are ignored;
    /// a missing required column, an empty required field, an unparsable number and a
    /// duplicate id are errors.
    pub fn read_with(path: &Path, columns: &ColumnMap) -> Result<Self> {
        let is_parquet = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet"));
        let obs = if is_parquet { Self::read_parquet(path)? } else { Self::read_csv(path, columns)? };
        obs.index(path)?;
        Ok(obs)
    }

    fn read_csv(path: &Path, columns: &ColumnMap) -> Result<Self> {
        let mut reader = csv::ReaderBuilder::new()
            .from_path(path)
            .map_err(|e| csv_error(path, e))?;
        let headers = reader.headers().map_err(|e| csv_error(path, e))?.clone();
        let idx = columns.positions(path, |name| headers.iter().position(|h| h == name))?;
        announce_defaults(path, columns, |k| idx[k].is_some());
        let mut obs = ObsTable::default();
        let mut record = csv::StringRecord::new();
        let mut row = 0u64;
        while reader.read_record(&mut record).map_err(|e| csv_error(path, e))? {
            row += 1;
            obs.push_text(path, row, |k| idx[k].map(|i| record.get(i).unwrap_or("")))?;
        }
        Ok(obs)
    }

    /// Builds the table from text columns (e.g. an AnnData obs dataframe decoded to strings):
    /// `columns` are (name, values) in any order; `index` is the obs names, the obs_id unless
    /// the map names an obs_id column.
    pub fn from_text_columns(path: &Path, index: &[String], columns: &[(String, Vec<String>)], map: &ColumnMap) -> Result<Self> {
        for (name, values) in columns {
            if values.len() != index.len() {
                return Err(Error::invalid(path, format!("obs column `{name}` has {} values for {} cells", values.len(), index.len())));
            }
        }
        let idx = map.positions_or_index(path, |name| columns.iter().position(|(n, _)| n == name), true)?;
        announce_defaults(path, map, |k| idx[k].is_some());
        let mut obs = ObsTable::default();
        #[allow(clippy::needless_range_loop)] // r indexes every column and the index alike
        for r in 0..index.len() {
            obs.push_text(path, r as u64 + 1, |k| match idx[k] {
                Some(ColumnAt::Column(i)) => Some(columns[i].1[r].as_str()),
                Some(ColumnAt::Index) => Some(index[r].as_str()),
                None => None,
            })?;
        }
        obs.index(path)?;
        Ok(obs)
    }

    /// Appends one cell from its text fields; `field(k)` is the value of `OBS_COLUMNS[k]`, None
    /// when the study has no such column. Required columns ([`REQUIRED_OBS_COLUMNS`]) must be
    /// non-empty; the others have defaults (see [`ColumnMap`]) and may be empty.
    fn push_text<'a>(&mut self, path: &Path, row: u64, field: impl Fn(usize) -> Option<&'a str>) -> Result<()> {
        // A study without plates: plate_name is the donor, well the condition (SAMPLE_DEFAULTS).
        let f = |k: usize| match (field(k), SAMPLE_DEFAULTS.iter().find(|d| d.0 == k)) {
            (None, Some(&(_, from))) => field(from).unwrap_or("").trim(),
            (value, _) => value.unwrap_or("").trim(),
        };
        for &k in REQUIRED_INDICES.iter().chain(SAMPLE_DEFAULTS.iter().map(|(k, _)| k)) {
            if f(k).is_empty() {
                return Err(Error::bad_value(path, row, OBS_COLUMNS[k], "a value (the column is required)", "an empty field"));
            }
        }
        // Optional numbers: empty (or absent) is NaN.
        let num = |k: usize| -> Result<f64> {
            match f(k) {
                "" => Ok(f64::NAN),
                v => v.parse::<f64>().map_err(|_| Error::bad_value(path, row, OBS_COLUMNS[k], "a number or an empty field", format!("`{v}`"))),
            }
        };
        let well = f(3);
        // A well named after its condition has no plate row or column.
        let (well_row, well_col) = if field(3).is_some() { split_well(well) } else { (None, None) };
        let col = match f(5) {
            "" => well_col.unwrap_or(0),
            v => v.parse::<f64>().ok().filter(|v| v.fract() == 0.0).ok_or_else(|| Error::bad_value(path, row, "col", "a whole number", format!("`{v}`")))? as i64,
        };
        let row_name = match f(4) {
            "" => well_row.unwrap_or(NO_ROW),
            v => v,
        };
        let control = match f(14) {
            "" => false,
            v => parse_bool(v).ok_or_else(|| Error::bad_value(path, row, "control", "True or False", format!("`{v}`")))?,
        };
        let library_id = match f(1) {
            "" => f(2),
            v => v,
        };
        self.push(&CellMeta {
            obs_id: f(0),
            library_id,
            plate_name: f(2),
            well,
            row: row_name,
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
        Ok(())
    }

    fn read_parquet(path: &Path) -> Result<Self> {
        let (_, batches) = parquet_util::read_all(path)?;
        let mut obs = ObsTable::default();
        let expected = "the Kaggle obs columns";
        let mut row0 = 0u64;
        for batch in &batches {
            let s = |k: usize| -> Result<StringArray> {
                let array = column(path, batch, OBS_COLUMNS[k], expected)?;
                if REQUIRED_INDICES.contains(&k) || SAMPLE_DEFAULTS.iter().any(|d| d.0 == k) { required_strings(path, OBS_COLUMNS[k], array, row0) } else { to_strings(path, OBS_COLUMNS[k], array) }
            };
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

/// The columns every stage needs (the cell id may be an AnnData file's obs index); the others of
/// [`OBS_COLUMNS`] are optional: `plate_name` is the donor and `well` the condition (`sm_name`)
/// when absent ([`SAMPLE_DEFAULTS`]: one pseudo-bulk sample per donor × condition × cell type),
/// `row` and `col` come from the well name (`B07` → row `B`, col 7; none for a defaulted well),
/// `library_id` is the plate, `dose_uM`/`timepoint_hr` are NaN, `control` False, the ids and
/// SMILES empty.
pub const REQUIRED_OBS_COLUMNS: [&str; 4] = ["obs_id", "cell_type", "sm_name", "donor_id"];
const REQUIRED_INDICES: [usize; 4] = [0, 8, 10, 7];
/// (column, the column whose value it takes when the study has none): plate_name ← donor_id,
/// well ← sm_name (indices into [`OBS_COLUMNS`]).
const SAMPLE_DEFAULTS: [(usize, usize); 2] = [(2, 7), (3, 10)];

/// One log line naming the sample columns the study lacks and what they default to.
fn announce_defaults(path: &Path, map: &ColumnMap, present: impl Fn(usize) -> bool) {
    let defaulted: Vec<String> = SAMPLE_DEFAULTS
        .iter()
        .filter(|(k, _)| !present(*k))
        .map(|&(k, from)| {
            let what = if OBS_COLUMNS[from] == "donor_id" { "the donor" } else { "the condition" };
            format!("no `{}` column, so {} = {what} (`{}`)", OBS_COLUMNS[k], OBS_COLUMNS[k], map.name(OBS_COLUMNS[from]))
        })
        .collect();
    if !defaulted.is_empty() {
        log::info!("{}: {}: one pseudo-bulk sample per donor × condition × cell type", path.display(), defaulted.join("; "));
    }
}
/// The row of a well whose name has no plate-row letters (a study without plate rows): one
/// level, so limma's design drops the term.
pub const NO_ROW: &str = "none";

/// A well name's plate row (leading letters) and column (trailing digits), where it has them.
pub fn split_well(well: &str) -> (Option<&str>, Option<i64>) {
    let letters = well.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(well.len());
    if letters == 0 || letters == well.len() {
        return (None, None);
    }
    let col = well[letters..].parse::<i64>().ok();
    (col.map(|_| &well[..letters]), col)
}

/// Where a study keeps each obs column: the pipeline's name (one of [`OBS_COLUMNS`]) → the
/// study's column name (`input.columns` in the workflow config, `--column NAME=COLUMN` on
/// `pgen-ingest`). Unmapped names are looked up as themselves.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ColumnMap {
    map: Vec<(String, String)>,
}

/// Where a column's values are found.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ColumnAt {
    Column(usize),
    /// The table's index (AnnData obs names).
    Index,
}

impl ColumnMap {
    /// Parses `name=column` pairs; `name` must be one of [`OBS_COLUMNS`].
    pub fn parse(pairs: &[String]) -> Result<Self> {
        let mut map = Vec::new();
        for p in pairs {
            let (k, v) = p.split_once('=').map(|(k, v)| (k.trim(), v.trim())).filter(|(k, v)| !k.is_empty() && !v.is_empty()).ok_or_else(|| {
                Error::param("input.columns", format!("`{p}`: expected NAME=COLUMN"))
            })?;
            if !OBS_COLUMNS.contains(&k) {
                return Err(Error::param("input.columns", format!("`{k}` is not an obs column the pipeline knows (expected one of {})", OBS_COLUMNS.join(", "))));
            }
            if map.iter().any(|(a, _): &(String, String)| a == k) {
                return Err(Error::param("input.columns", format!("`{k}` is mapped twice")));
            }
            map.push((k.to_string(), v.to_string()));
        }
        Ok(Self { map })
    }

    /// The study's name for the pipeline's column `name`.
    pub fn name<'a>(&'a self, name: &'a str) -> &'a str {
        self.map.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or(name)
    }

    /// Each of [`OBS_COLUMNS`]'s position via `find`; a required column that is missing (or a
    /// mapped column that is missing) is an error naming the file and the column.
    fn positions(&self, path: &Path, find: impl Fn(&str) -> Option<usize>) -> Result<Vec<Option<usize>>> {
        Ok(self.positions_or_index(path, find, false)?.into_iter().map(|p| p.map(|c| match c {
            ColumnAt::Column(i) => i,
            ColumnAt::Index => unreachable!("only AnnData tables have an index"),
        })).collect())
    }

    /// As [`ColumnMap::positions`]; with `index`, a table without an (unmapped) `obs_id`
    /// column takes its index as the obs_id.
    fn positions_or_index(&self, path: &Path, find: impl Fn(&str) -> Option<usize>, index: bool) -> Result<Vec<Option<ColumnAt>>> {
        OBS_COLUMNS
            .iter()
            .map(|&name| {
                let column = self.name(name);
                let mapped = column != name;
                match find(column) {
                    Some(i) => Ok(Some(ColumnAt::Column(i))),
                    None if name == "obs_id" && index && !mapped => Ok(Some(ColumnAt::Index)),
                    None if REQUIRED_OBS_COLUMNS.contains(&name) || mapped => Err(Error::MissingColumn {
                        path: path.to_path_buf(),
                        column: column.to_string(),
                        expected: if mapped {
                            format!("the column input.columns maps `{name}` to")
                        } else {
                            format!("the obs columns every stage needs: {} (map other names with input.columns)", REQUIRED_OBS_COLUMNS.join(", "))
                        },
                    }),
                    None => Ok(None),
                }
            })
            .collect()
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
