//! Readers and writers for the Kaggle files (SPEC §2) and the pipeline's cached intermediates.
pub mod arrow_util;
mod cell_gene_keys;
pub mod cells_h5ad;
pub mod counts;
pub mod de_stats;
pub mod de_table;
pub mod excluded;
pub mod genes;
pub mod h5ad;
pub mod id_map;
pub mod obs;
pub mod sizes;
pub mod parquet_util;
pub mod prediction_h5ad;
pub mod submission;
