//! `pgen-pseudobulk`: sums counts per plate × well × cell type (SPEC §3 step 2, no minimum
//! cell count), keeping the group's metadata. Works on any cells with an obs table — real,
//! held out, or generated.
use crate::cells::Cells;
use crate::error::{Error, Result};
use crate::io::arrow_util::{column, finite_f64, required_strings, to_strings};
use crate::io::parquet_util;
use arrow_array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// Metadata of one pseudo-bulk sample.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct GroupKey {
    pub cell_type: String,
    pub plate_name: String,
    pub well: String,
    pub donor_id: String,
    pub row: String,
    pub sm_name: String,
    pub sm_lincs_id: String,
    pub smiles: String,
    pub control: bool,
}

impl GroupKey {
    /// The group key of cell `i` of `obs`.
    pub fn of_cell(obs: &crate::io::obs::ObsTable, i: usize) -> Self {
        GroupKey {
            cell_type: obs.cell_type.get(i).to_string(),
            plate_name: obs.plate_name.get(i).to_string(),
            well: obs.well.get(i).to_string(),
            donor_id: obs.donor_id.get(i).to_string(),
            row: obs.row.get(i).to_string(),
            sm_name: obs.sm_name.get(i).to_string(),
            sm_lincs_id: obs.sm_lincs_id.get(i).to_string(),
            smiles: obs.smiles.get(i).to_string(),
            control: obs.control[i],
        }
    }

    /// The value of a sample covariate column (`cell_type`, `plate_name`, `well`, `donor_id`,
    /// `row`, `sm_name`), None for any other name.
    pub fn column(&self, name: &str) -> Option<&str> {
        Some(match name {
            "cell_type" => &self.cell_type,
            "plate_name" => &self.plate_name,
            "well" => &self.well,
            "donor_id" => &self.donor_id,
            "row" => &self.row,
            "sm_name" => &self.sm_name,
            _ => return None,
        })
    }
}

/// String key columns in file order (then `control`, `n_cells`, genes).
pub const GROUP_STRING_COLUMNS: [&str; 8] = ["cell_type", "plate_name", "well", "donor_id", "row", "sm_name", "sm_lincs_id", "SMILES"];
/// The group columns that identify a sample (none may be null or empty when read back).
const KEY_COLUMNS: [&str; 6] = ["cell_type", "plate_name", "well", "donor_id", "row", "sm_name"];

#[derive(Debug, Clone, PartialEq, Default)]
pub struct PseudoBulk {
    pub keys: Vec<GroupKey>,
    pub n_cells: Vec<u64>,
    pub genes: Vec<String>,
    /// samples × genes, row-major.
    pub counts: Vec<f64>,
}

impl PseudoBulk {
    pub fn n_samples(&self) -> usize {
        self.keys.len()
    }

    pub fn sample(&self, i: usize) -> &[f64] {
        let g = self.genes.len();
        &self.counts[i * g..(i + 1) * g]
    }

    /// Sums the cells of every input per (plate, well, cell type). Groups are ordered by
    /// cell type, plate, well. A group whose cells disagree on donor, row or compound is an
    /// error (the well would not be one sample).
    pub fn from_cells(inputs: &[(&Cells, &Path)]) -> Result<Self> {
        let genes = inputs.first().map(|(c, _)| c.counts.genes.clone()).unwrap_or_default();
        let g = genes.len();
        #[allow(clippy::type_complexity)]
        let mut groups: BTreeMap<(String, String, String), (GroupKey, u64, Vec<f64>)> = BTreeMap::new();
        for (cells, path) in inputs {
            if inputs[0].0.counts.genes != cells.counts.genes {
                inputs[0].0.check_same_genes(cells, path)?;
            }
            let o = &cells.obs;
            for i in 0..o.len() {
                let key = GroupKey::of_cell(o, i);
                let entry = groups
                    .entry((key.cell_type.clone(), key.plate_name.clone(), key.well.clone()))
                    .or_insert_with(|| (key.clone(), 0, vec![0.0; g]));
                if entry.0 != key {
                    return Err(Error::invalid(
                        path,
                        format!(
                            "cell `{}` of plate {} well {} ({}) has compound `{}`/donor `{}`/row `{}`, other cells of that group have `{}`/`{}`/`{}`",
                            o.obs_id[i], key.plate_name, key.well, key.cell_type, key.sm_name, key.donor_id, key.row, entry.0.sm_name, entry.0.donor_id, entry.0.row
                        ),
                    ));
                }
                entry.1 += 1;
                let (idx, dat) = cells.counts.row(i);
                for (&gi, &c) in idx.iter().zip(dat) {
                    entry.2[gi as usize] += c as f64;
                }
            }
        }
        let mut pb = PseudoBulk { genes, ..Default::default() };
        for (_, (key, n, sums)) in groups {
            pb.keys.push(key);
            pb.n_cells.push(n);
            pb.counts.extend(sums);
        }
        Ok(pb)
    }

    /// The samples of one cell type.
    pub fn cell_type(&self, cell_type: &str) -> PseudoBulk {
        self.take(&self.rows_of_cell_type(cell_type))
    }

    /// The indices of `cell_type`'s samples, in order.
    pub fn rows_of_cell_type(&self, cell_type: &str) -> Vec<usize> {
        (0..self.n_samples()).filter(|&i| self.keys[i].cell_type == cell_type).collect()
    }

    /// The samples `rows`, in that order.
    pub fn take(&self, rows: &[usize]) -> PseudoBulk {
        PseudoBulk {
            keys: rows.iter().map(|&i| self.keys[i].clone()).collect(),
            n_cells: rows.iter().map(|&i| self.n_cells[i]).collect(),
            genes: self.genes.clone(),
            counts: rows.iter().flat_map(|&i| self.sample(i).iter().copied()).collect(),
        }
    }

    /// Wide parquet: key columns, `control`, `n_cells`, then one float64 column per gene.
    pub fn write(&self, path: &Path) -> Result<()> {
        let mut fields = Vec::new();
        let mut columns: Vec<ArrayRef> = Vec::new();
        let key_values: [fn(&GroupKey) -> &str; 8] = [
            |k| &k.cell_type, |k| &k.plate_name, |k| &k.well, |k| &k.donor_id, |k| &k.row, |k| &k.sm_name, |k| &k.sm_lincs_id, |k| &k.smiles,
        ];
        for (name, get) in GROUP_STRING_COLUMNS.iter().zip(key_values) {
            fields.push(Field::new(*name, DataType::Utf8, false));
            columns.push(Arc::new(StringArray::from_iter_values(self.keys.iter().map(get))));
        }
        fields.push(Field::new("control", DataType::Boolean, false));
        columns.push(Arc::new(BooleanArray::from(self.keys.iter().map(|k| k.control).collect::<Vec<_>>())));
        fields.push(Field::new("n_cells", DataType::Int64, false));
        columns.push(Arc::new(Int64Array::from_iter_values(self.n_cells.iter().map(|&n| n as i64))));
        let g = self.genes.len();
        for (j, gene) in self.genes.iter().enumerate() {
            fields.push(Field::new(gene, DataType::Float64, false));
            columns.push(Arc::new(Float64Array::from_iter_values((0..self.n_samples()).map(|i| self.counts[i * g + j]))));
        }
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| Error::arrow(path, e))?;
        parquet_util::write_batch(path, &batch, vec![])
    }

    pub fn read(path: &Path) -> Result<Self> {
        let (schema, batches) = parquet_util::read_all(path)?;
        let expected = "a pseudo-bulk table (pgen-pseudobulk output)";
        let fixed: Vec<&str> = GROUP_STRING_COLUMNS.iter().copied().chain(["control", "n_cells"]).collect();
        for name in &fixed {
            crate::io::arrow_util::field_index(path, &schema, name, expected)?;
        }
        let genes: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).filter(|n| !fixed.contains(&n.as_str())).collect();
        let mut pb = PseudoBulk { genes, ..Default::default() };
        let mut row0 = 0u64;
        for batch in &batches {
            let s: Vec<StringArray> = GROUP_STRING_COLUMNS
                .iter()
                .map(|n| {
                    let array = column(path, batch, n, expected)?;
                    // The group keys name a sample; SMILES / LINCS ids are descriptive only.
                    if KEY_COLUMNS.contains(n) { required_strings(path, n, array, row0) } else { to_strings(path, n, array) }
                })
                .collect::<Result<_>>()?;
            let control = finite_f64(path, "control", column(path, batch, "control", expected)?, row0)?;
            let n_cells = finite_f64(path, "n_cells", column(path, batch, "n_cells", expected)?, row0)?;
            let gene_cols: Vec<Float64Array> = pb.genes.iter().map(|g| finite_f64(path, g, column(path, batch, g, expected)?, row0)).collect::<Result<_>>()?;
            for i in 0..batch.num_rows() {
                let row = row0 + i as u64 + 1;
                let n = n_cells.value(i);
                if n < 1.0 || n.fract() != 0.0 {
                    return Err(Error::bad_value(path, row, "n_cells", "a whole number of cells, at least 1", n.to_string()));
                }
                if let Some((g, c)) = gene_cols.iter().enumerate().find(|(_, c)| c.value(i) < 0.0) {
                    return Err(Error::bad_value(path, row, &pb.genes[g], "a non-negative count", c.value(i).to_string()));
                }
                pb.keys.push(GroupKey {
                    cell_type: s[0].value(i).into(),
                    plate_name: s[1].value(i).into(),
                    well: s[2].value(i).into(),
                    donor_id: s[3].value(i).into(),
                    row: s[4].value(i).into(),
                    sm_name: s[5].value(i).into(),
                    sm_lincs_id: s[6].value(i).into(),
                    smiles: s[7].value(i).into(),
                    control: control.value(i) != 0.0,
                });
                pb.n_cells.push(n as u64);
                pb.counts.extend(gene_cols.iter().map(|c| c.value(i)));
            }
            row0 += batch.num_rows() as u64;
        }
        Ok(pb)
    }
}
