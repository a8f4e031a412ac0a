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
