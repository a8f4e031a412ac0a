//! Small helpers over arrow arrays read from files written by other tools (pandas, R, polars):
//! the same logical column can arrive as plain, large or view strings, or dictionary-encoded.
use crate::error::{Error, Result};
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_schema::DataType;
use std::path::Path;

/// Any string-like column as a plain `StringArray` (casting dictionaries and large strings).
pub fn to_strings(path: &Path, column: &str, array: &ArrayRef) -> Result<StringArray> {
    let is_stringy = |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    let ok = match array.data_type() {
        t if is_stringy(t) => true,
        DataType::Dictionary(_, v) => is_stringy(v),
        _ => false,
    };
    if !ok {
        return Err(Error::ColumnType {
            path: path.to_path_buf(),
            column: column.to_string(),
            found: array.data_type().to_string(),
            expected: "strings".into(),
        });
    }
    let cast = arrow_cast::cast(array, &DataType::Utf8).map_err(|e| Error::arrow(path, e))?;
    Ok(cast.as_any().downcast_ref::<StringArray>().expect("cast to Utf8 gives StringArray").clone())
}

/// Any numeric column as f64 values (None for nulls).
pub fn to_f64(path: &Path, column: &str, array: &ArrayRef) -> Result<arrow_array::Float64Array> {
    if !array.data_type().is_numeric() && *array.data_type() != DataType::Boolean {
        return Err(Error::ColumnType {
            path: path.to_path_buf(),
            column: column.to_string(),
            found: array.data_type().to_string(),
            expected: "a numeric type".into(),
        });
    }
    let cast = arrow_cast::cast(array, &DataType::Float64).map_err(|e| Error::arrow(path, e))?;
    Ok(cast.as_any().downcast_ref::<arrow_array::Float64Array>().expect("cast gives Float64Array").clone())
}

/// A numeric column whose every value is a finite number: the first null, NaN or ±inf is an
/// error naming its row (1-based over the file's rows, `row0` rows before this batch).
pub fn finite_f64(path: &Path, column: &str, array: &ArrayRef, row0: u64) -> Result<arrow_array::Float64Array> {
    let values = to_f64(path, column, array)?;
    if let Some(i) = (0..values.len()).find(|&i| values.is_null(i) || !values.value(i).is_finite()) {
        let found = if values.is_null(i) { "null".to_string() } else { values.value(i).to_string() };
        return Err(Error::bad_value(path, row0 + i as u64 + 1, column, "a finite number", found));
    }
    Ok(values)
}

/// A string column without nulls or empty values (a key column).
pub fn required_strings(path: &Path, column: &str, array: &ArrayRef, row0: u64) -> Result<StringArray> {
    let values = to_strings(path, column, array)?;
    if let Some(i) = (0..values.len()).find(|&i| values.is_null(i) || values.value(i).is_empty()) {
        let found = if values.is_null(i) { "null" } else { "an empty string" };
        return Err(Error::bad_value(path, row0 + i as u64 + 1, column, "a non-empty name", found));
    }
    Ok(values)
}

/// The column called `name`, or the one-line error naming it.
pub fn column<'a>(path: &Path, batch: &'a RecordBatch, name: &str, expected: &str) -> Result<&'a ArrayRef> {
    batch.column_by_name(name).ok_or_else(|| Error::MissingColumn {
        path: path.to_path_buf(),
        column: name.to_string(),
        expected: expected.to_string(),
    })
}

/// Index of `name` among the top-level fields of a parquet file's arrow schema.
pub fn field_index(path: &Path, schema: &arrow_schema::Schema, name: &str, expected: &str) -> Result<usize> {
    schema.index_of(name).map_err(|_| Error::MissingColumn {
        path: path.to_path_buf(),
        column: name.to_string(),
        expected: expected.to_string(),
    })
}
