//! A set of cells: the obs table and the count matrix with rows in obs order, read from and
//! written to the pipeline's cache (`counts.parquet` + `obs.parquet`).
use crate::counts::CountMatrix;
use crate::error::{Error, Result};
use crate::io::counts::{read_long_counts, write_long_counts, CountType, GeneOrder};
use crate::io::obs::ObsTable;
use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
pub struct Cells {
    pub obs: ObsTable,
    pub counts: CountMatrix,
}

impl Cells {
    pub fn read(counts: &Path, obs: &Path) -> Result<Self> {
        let obs = ObsTable::read(obs)?;
        let counts = read_long_counts(counts, &obs, GeneOrder::FromFile, None)?;
        Ok(Self { obs, counts })
    }

    /// Both files; the caller stages them (see [`crate::atomic::OutputSet`]).
    pub fn write(&self, counts: &Path, obs: &Path) -> Result<()> {
        write_long_counts(counts, &self.counts, &self.obs.obs_id, CountType::Int32)?;
        self.obs.write_parquet(obs)
    }

    pub fn len(&self) -> usize {
        self.obs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.obs.is_empty()
    }

    pub fn take(&self, rows: &[usize]) -> Self {
        Self { obs: self.obs.take(rows), counts: self.counts.take_rows(rows) }
    }

    /// Refuses a second cell set whose genes differ from the first's.
    pub fn check_same_genes(&self, other: &Cells, other_path: &Path) -> Result<()> {
        if self.counts.genes != other.counts.genes {
            let first = self.counts.genes.iter().zip(&other.counts.genes).position(|(a, b)| a != b);
            return Err(Error::invalid(
                other_path,
                match first {
                    Some(i) => format!("gene order differs from the training cells at position {}: `{}` vs `{}`", i + 1, other.counts.genes[i], self.counts.genes[i]),
                    None => format!("{} genes, expected {}", other.counts.genes.len(), self.counts.genes.len()),
                },
            ));
        }
        Ok(())
    }
}
