//! `pgen-ingest`: reads Kaggle-layout count and metadata files, validates them, applies the
//! excluded ids, and writes the pipeline's cached count matrix and obs table (plus a summary
//! and a QC plot).
use crate::atomic::OutputSet;
use crate::counts::CountMatrix;
use crate::error::Result;
use crate::io::counts::{read_long_counts, write_long_counts, CountType, GeneOrder};
use crate::io::excluded::ExcludedIds;
use crate::io::genes::read_gene_list;
use crate::io::h5ad::read_h5ad;
pub use crate::io::h5ad::CountSource;
use crate::io::obs::{ColumnMap, ObsTable};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Where the cells come from.
pub enum CellsInput {
    /// Kaggle's long count table (`adata_train.parquet`) and obs table (`adata_obs_meta.csv`).
    Kaggle { counts: PathBuf, obs: PathBuf },
    /// An AnnData file: its obs dataframe and the counts at `source`.
    H5ad { path: PathBuf, source: CountSource },
}

impl CountSource {
    /// Parses `X`, `raw` (or `raw/X`) and `layers/<name>`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "X" => Ok(CountSource::X),
            "raw" | "raw/X" => Ok(CountSource::RawX),
            _ => match s.strip_prefix("layers/") {
                Some(name) if !name.is_empty() => Ok(CountSource::Layer(name.to_string())),
                _ => Err(crate::Error::param("input.h5ad.counts", format!("`{s}`: expected X, raw or layers/<name>"))),
            },
        }
    }
}

pub struct IngestInputs {
    pub cells: CellsInput,
    pub excluded: Option<PathBuf>,
    pub genes: Option<PathBuf>,
    /// The study's obs column names (`input.columns`).
    pub columns: ColumnMap,
}

pub struct IngestOutputs {
    pub counts: PathBuf,
    pub obs: PathBuf,
    pub summary: Option<PathBuf>,
    pub qc_plot: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IngestSummary {
    pub cells: usize,
    pub genes: usize,
    pub nonzeros: usize,
    pub excluded_pairs_listed: usize,
    pub empty_cells: usize,
    pub cells_per_cell_type: Vec<(String, usize)>,
    pub median_total_counts: f64,
    pub median_max_count: f64,
    pub csr_bytes: usize,
    pub obs_bytes: usize,
    /// Peak resident memory of the process after loading (VmHWM; Linux only).
    pub peak_rss_bytes_after_load: Option<u64>,
    pub load_seconds: f64,
}

/// Loads the inputs into memory: the obs table, the CSR matrix (rows in obs order) and the
/// number of excluded (obs_id, gene) pairs listed.
pub fn load(inputs: &IngestInputs) -> Result<(ObsTable, CountMatrix, usize)> {
    let excluded = inputs.excluded.as_deref().map(ExcludedIds::read).transpose()?;
    let gene_list = inputs.genes.as_deref().map(read_gene_list).transpose()?;
    let order = match &gene_list {
        Some(g) => GeneOrder::Given(g),
        None => GeneOrder::FromFile,
    };
    let (obs, m) = match &inputs.cells {
        CellsInput::Kaggle { counts, obs } => {
            let obs = ObsTable::read_with(obs, &inputs.columns)?;
            let m = read_long_counts(counts, &obs, order, excluded.as_ref())?;
            (obs, m)
        }
        CellsInput::H5ad { path, source } => {
            let (raw_obs, m) = read_h5ad(path, source, order, excluded.as_ref())?;
            let obs = ObsTable::from_text_columns(path, &raw_obs.obs_names, &raw_obs.columns, &inputs.columns)?;
            (obs, m)
        }
    };
    Ok((obs, m, excluded.map_or(0, |e| e.pairs.len())))
}

pub fn ingest(inputs: &IngestInputs, outputs: &IngestOutputs) -> Result<IngestSummary> {
    let start = Instant::now();
    let (obs, m, listed) = load(inputs)?;
    let load_seconds = start.elapsed().as_secs_f64();
    let peak = peak_rss_bytes();
    let totals = m.cell_totals();
    let maxima = m.cell_max();
    let mut per_type = vec![0usize; obs.cell_type.levels().len()];
    for &c in obs.cell_type.codes() {
        per_type[c as usize] += 1;
    }
    let summary = IngestSummary {
        cells: m.n_cells(),
        genes: m.n_genes(),
        nonzeros: m.nnz(),
        excluded_pairs_listed: listed,
        empty_cells: m.cell_nnz().iter().filter(|&&n| n == 0).count(),
        cells_per_cell_type: obs.cell_type.levels().iter().cloned().zip(per_type).collect(),
        median_total_counts: crate::stats::median(&mut totals.iter().map(|&v| v as f64).collect::<Vec<_>>()),
        median_max_count: crate::stats::median(&mut maxima.iter().map(|&v| v as f64).collect::<Vec<_>>()),
        csr_bytes: m.heap_bytes(),
        obs_bytes: obs.heap_bytes(),
        peak_rss_bytes_after_load: peak,
        load_seconds,
    };
    log::info!(
        "loaded {} cells × {} genes, {} non-zeros in {:.1} s (CSR {:.1} MiB, obs {:.1} MiB, peak RSS {})",
        summary.cells,
        summary.genes,
        summary.nonzeros,
        load_seconds,
        summary.csr_bytes as f64 / 1048576.0,
        summary.obs_bytes as f64 / 1048576.0,
        peak.map(|p| format!("{:.1} MiB", p as f64 / 1048576.0)).unwrap_or_else(|| "n/a".into())
    );

    let mut out = OutputSet::new();
    write_long_counts(&out.stage(&outputs.counts)?, &m, &obs.obs_id, CountType::Int32)?;
    obs.write_parquet(&out.stage(&outputs.obs)?)?;
    if let Some(p) = &outputs.summary {
        let json = serde_json::to_string_pretty(&summary).expect("summary serialises");
        crate::atomic::write_atomic(out.stage(p)?, |w| writeln!(w, "{json}"))?;
    }
    if let Some(p) = &outputs.qc_plot {
        qc_plot(&out.stage(p)?, &totals, &summary)?;
    }
    out.commit()?;
    Ok(summary)
}

/// Two panels: per-cell total counts, and cells per cell type.
fn qc_plot(path: &Path, totals: &[u64], summary: &IngestSummary) -> Result<()> {
    let values: Vec<f64> = totals.iter().map(|&t| t as f64).collect();
    let bars: Vec<(String, f64)> = summary.cells_per_cell_type.iter().map(|(n, c)| (n.clone(), *c as f64)).collect();
    crate::plot::draw_png(path, (1200, 500), |root| {
        let (left, right) = root.split_horizontally(600);
        crate::plot::histogram_panel(&left, "Total counts per cell", "total counts", &values, true)?;
        crate::plot::bar_panel(&right, "Cells per cell type", "cells", &bars)
    })
}

/// VmHWM from /proc/self/status.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
