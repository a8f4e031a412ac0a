//! Tables in the `de_train.parquet` layout: row keys (cell_type, sm_name, sm_lincs_id, SMILES,
//! control) followed by one float64 column per gene. Used for DE values, predictions and the
//! simulator's true effects.
use crate::error::{Error, Result};
use crate::io::arrow_util::{column, finite_f64, required_strings, to_strings};
use crate::io::parquet_util;
use arrow_array::{ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use std::path::Path;
use std::sync::Arc;

pub const DE_KEY_COLUMNS: [&str; 5] = ["cell_type", "sm_name", "sm_lincs_id", "SMILES", "control"];

/// One row's keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeRowKey {
    pub cell_type: String,
    pub sm_name: String,
    pub sm_lincs_id: String,
    pub smiles: String,
    pub control: bool,
}

/// Rows × genes values, row-major.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeTable {
    pub keys: Vec<DeRowKey>,
    pub genes: Vec<String>,
    pub values: Vec<f64>,
}

impl DeTable {
    pub fn n_rows(&self) -> usize {
        self.keys.len()
    }

    pub fn row(&self, i: usize) -> &[f64] {
        let g = self.genes.len();
        &self.values[i * g..(i + 1) * g]
    }

    /// Reads a de_train-layout parquet file. Every non-key column is a gene; values must be
    /// finite numbers.
    /// The rows `rows`, in that order.
    pub fn take_rows(&self, rows: &[usize]) -> Self {
        Self {
            keys: rows.iter().map(|&i| self.keys[i].clone()).collect(),
            genes: self.genes.clone(),
            values: rows.iter().flat_map(|&i| self.row(i).iter().copied()).collect(),
        }
    }

    pub fn read(path: &Path) -> Result<Self> {
        let (schema, batches) = parquet_util::read_all(path)?;
        let expected = "the de_train key columns cell_type, sm_name, sm_lincs_id, SMILES, control";
        for k in DE_KEY_COLUMNS {
            crate::io::arrow_util::field_index(path, &schema, k, expected)?;
        }
        let genes: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|n| !DE_KEY_COLUMNS.contains(&n.as_str()) && n != "__index_level_0__")
            .collect();
        if genes.is_empty() {
            return Err(Error::invalid(path, "no gene columns after the de_train key columns"));
        }
        let mut table = DeTable { genes, ..Default::default() };
        let mut row0 = 0u64;
        for batch in &batches {
            let s = |name: &str| to_strings(path, name, column(path, batch, name, expected)?);
            let key = |name: &str| required_strings(path, name, column(path, batch, name, expected)?, row0);
            let (ct, sm, lincs, smiles) = (key("cell_type")?, key("sm_name")?, s("sm_lincs_id")?, s("SMILES")?);
            let control = finite_f64(path, "control", column(path, batch, "control", expected)?, row0)?;
            let n = batch.num_rows();
            for i in 0..n {
                table.keys.push(DeRowKey {
                    cell_type: ct.value(i).to_string(),
                    sm_name: sm.value(i).to_string(),
                    sm_lincs_id: lincs.value(i).to_string(),
                    smiles: smiles.value(i).to_string(),
                    control: control.value(i) != 0.0,
                });
            }
            let start = table.values.len();
            table.values.resize(start + n * table.genes.len(), 0.0);
            let ng = table.genes.len();
            for (g, gene) in table.genes.iter().enumerate() {
                let col = finite_f64(path, gene, column(path, batch, gene, "a gene column")?, row0)?;
                for i in 0..n {
                    table.values[start + i * ng + g] = col.value(i);
                }
            }
            row0 += n as u64;
        }
        Ok(table)
    }

    /// Writes the table with pandas' dtypes: strings, bool control, float64 genes.
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut fields = vec![
            Field::new("cell_type", DataType::Utf8, false),
            Field::new("sm_name", DataType::Utf8, false),
            Field::new("sm_lincs_id", DataType::Utf8, false),
            Field::new("SMILES", DataType::Utf8, false),
            Field::new("control", DataType::Boolean, false),
        ];
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(self.keys.iter().map(|k| &k.cell_type))),
            Arc::new(StringArray::from_iter_values(self.keys.iter().map(|k| &k.sm_name))),
            Arc::new(StringArray::from_iter_values(self.keys.iter().map(|k| &k.sm_lincs_id))),
            Arc::new(StringArray::from_iter_values(self.keys.iter().map(|k| &k.smiles))),
            Arc::new(BooleanArray::from(self.keys.iter().map(|k| k.control).collect::<Vec<_>>())),
        ];
        let ng = self.genes.len();
        for (g, gene) in self.genes.iter().enumerate() {
            fields.push(Field::new(gene, DataType::Float64, false));
            columns.push(Arc::new(Float64Array::from_iter_values((0..self.n_rows()).map(|i| self.values[i * ng + g]))));
        }
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| Error::arrow(path, e))?;
        parquet_util::write_batch(path, &batch, vec![])
    }
}
