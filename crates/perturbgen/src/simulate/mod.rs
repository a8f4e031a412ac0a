//! `pgen-simulate`: a Kaggle-format data set from a negative-binomial process with known
//! structure (SPEC §2), with the test pairs' cells and the true effects kept aside in `truth/`
//! so the pipeline can score itself.
pub mod biology;
pub mod config;
pub mod layout;
pub mod rng;
pub mod sampler;

use crate::atomic::OutputSet;
use crate::counts::CountMatrix;
use crate::error::{Error, Result};
use crate::io::counts::{CountType, LongCountsWriter};
use crate::io::de_table::{DeRowKey, DeTable};
use crate::io::excluded::ExcludedIds;
use crate::io::obs::{CellMeta, ObsTable};
use biology::Biology;
pub use config::{Preset, SimConfig};
use layout::{CompoundKind, Layout};
use rand::Rng;
use rand_distr::{Distribution, Poisson, StandardNormal};
use rayon::prelude::*;
use rng::{hash64, stream, Purpose};
use serde::Serialize;
use std::collections::HashSet;
use std::path::Path;

/// What was produced (written as `simulation.json`).
#[derive(Debug, Clone, Serialize)]
pub struct SimulationSummary {
    pub config: SimConfig,
    pub n_genes: usize,
    pub n_compounds: usize,
    pub train_cells: usize,
    pub test_cells: usize,
    pub train_nonzeros: usize,
    pub test_pairs: usize,
    pub excluded_pairs: usize,
    pub cells_per_cell_type: Vec<(String, usize)>,
    pub median_total_counts: f64,
    pub median_max_count: f64,
    pub median_nonzero_genes: f64,
}

/// One cell's metadata indices, before strings are attached.
struct CellDraw {
    id: u64,
    plate: usize,
    well: usize,
    cell_type: usize,
    train: bool,
    excluded_gene: Option<u32>,
}

/// The cells of one (plate, well).
struct WellBatch {
    cells: Vec<CellDraw>,
    counts: CountMatrix,
}

pub fn simulate(config: &SimConfig, out_dir: &Path) -> Result<SimulationSummary> {
    let layout = Layout::build(config)?;
    let bio = Biology::new(config, &layout);
    let genes = layout.genes.clone();
    let proportions: Vec<f64> = {
        let total: f64 = config.cell_types.iter().map(|c| c.proportion).sum();
        config.cell_types.iter().map(|c| c.proportion / total).collect()
    };

    // (plate, well index) tasks in plate then well order.
    let tasks: Vec<(usize, usize)> = (0..layout.plates.len())
        .flat_map(|p| (0..layout.wells[layout.plates[p].layout].len()).map(move |w| (p, w)))
        .collect();
    // Cells per well chosen so that the expected number of training cells is as asked.
    let train_share = |p: usize, w: usize| -> f64 {
        let k = layout.wells[layout.plates[p].layout][w].compound;
        bio.viability[k] * (0..proportions.len()).filter(|&t| !layout.is_withheld(t, k)).map(|t| proportions[t]).sum::<f64>()
    };
    let denom: f64 = tasks.iter().map(|&(p, w)| train_share(p, w)).sum();
    let cells_per_well = config.n_train_cells as f64 / denom;
    log::info!(
        "simulating {} genes, {} compounds, {} plates × {} wells, {:.0} cells per well",
        genes.len(), layout.compounds.len(), layout.plates.len(), layout.wells[0].len(), cells_per_well
    );

    let library_factor: Vec<f64> = (0..layout.plates.len() * 8)
        .map(|i| { let z: f64 = StandardNormal.sample(&mut stream(config.seed, Purpose::Libraries, i as u64)); (0.1 * z).exp() })
        .collect();

    let mut outputs = OutputSet::new();
    let train_path = outputs.stage(out_dir.join("adata_train.parquet"))?;
    let test_path = outputs.stage(out_dir.join("truth/adata_test.parquet"))?;
    let mut train_writer = LongCountsWriter::create(&train_path, &genes, CountType::KaggleFloat)?;
    let mut test_writer = LongCountsWriter::create(&test_path, &genes, CountType::KaggleFloat)?;
    let (mut train_obs, mut test_obs) = (ObsTable::default(), ObsTable::default());
    let mut excluded = ExcludedIds::default();
    let mut seen_ids = HashSet::new();
    let mut cell_type_counts = vec![0usize; layout.cell_types.len()];
    let (mut totals, mut maxima, mut nonzeros) = (Vec::new(), Vec::new(), Vec::new());
    let mut train_nnz = 0usize;

    let pb = crate::progress::bar(tasks.len() as u64, "wells");
    let chunk = (rayon::current_num_threads() * 4).max(4);
    for (c, block) in tasks.chunks(chunk).enumerate() {
        let batches: Vec<WellBatch> = block
            .par_iter()
            .enumerate()
            .map(|(i, &(p, w))| simulate_well(config, &layout, &bio, &proportions, &library_factor, cells_per_well, (c * chunk + i) as u64, p, w))
            .collect();
        for batch in batches {
            for (i, cell) in batch.cells.iter().enumerate() {
                let id = format!("{:016x}", cell.id);
                if !seen_ids.insert(cell.id) {
                    return Err(Error::Data(format!("cell id {id} drawn twice; try another --seed")));
                }
                let plate = &layout.plates[cell.plate];
                let well = &layout.wells[plate.layout][cell.well];
                let compound = &layout.compounds[well.compound];
                let row = layout::ROWS[well.row].to_string();
                let library = format!("library_{}", cell.plate * 8 + well.row);
                let meta = CellMeta {
                    obs_id: &id,
                    library_id: &library,
                    plate_name: &plate.name,
                    well: &well.name,
                    row: &row,
                    col: well.col as i64 + 1,
                    cell_id: "PBMC",
                    donor_id: &layout.donors[plate.donor],
                    cell_type: &layout.cell_types[cell.cell_type],
                    sm_lincs_id: &compound.lincs_id,
                    sm_name: &compound.name,
                    smiles: &compound.smiles,
                    dose_um: 1.0,
                    timepoint_hr: 24.0,
                    control: compound.kind != CompoundKind::Regular,
                };
                cell_type_counts[cell.cell_type] += 1;
                let (idx, data) = batch.counts.row(i);
                if cell.train {
                    train_obs.push(&meta);
                    train_nnz += idx.len();
                    totals.push(data.iter().map(|&x| x as f64).sum::<f64>());
                    maxima.push(data.iter().copied().max().unwrap_or(0) as f64);
                    nonzeros.push(idx.len() as f64);
                    if let Some(g) = cell.excluded_gene {
                        excluded.pairs.push((id.clone(), genes[g as usize].clone()));
                    }
                } else {
                    test_obs.push(&meta);
                }
            }
            write_split(&mut train_writer, &batch, true, &train_obs)?;
            write_split(&mut test_writer, &batch, false, &test_obs)?;
            pb.inc(1);
        }
    }
    pb.finish_and_clear();
    train_writer.finish()?;
    test_writer.finish()?;

    train_obs.write_csv(&outputs.stage(out_dir.join("adata_obs_meta.csv"))?)?;
    test_obs.write_csv(&outputs.stage(out_dir.join("truth/adata_test_obs_meta.csv"))?)?;
    excluded.write(&outputs.stage(out_dir.join("adata_excluded_ids.csv"))?)?;
    layout.id_map.write(&outputs.stage(out_dir.join("id_map.csv"))?)?;
    crate::io::genes::write_gene_list(&outputs.stage(out_dir.join("genes.txt"))?, &genes)?;
    let zeros = vec![0.0; layout.id_map.rows.len() * genes.len()];
    crate::io::submission::write_submission(&outputs.stage(out_dir.join("sample_submission.csv"))?, &layout.id_map, &genes, &zeros)?;
    true_effects(&layout, &bio).write(&outputs.stage(out_dir.join("truth/true_effects.parquet"))?)?;

    let summary = SimulationSummary {
        config: config.clone(),
        n_genes: genes.len(),
        n_compounds: layout.compounds.len(),
        train_cells: train_obs.len(),
        test_cells: test_obs.len(),
        train_nonzeros: train_nnz,
        test_pairs: layout.id_map.rows.len(),
        excluded_pairs: excluded.pairs.len(),
        cells_per_cell_type: layout.cell_types.iter().cloned().zip(cell_type_counts).collect(),
        median_total_counts: crate::stats::median(&mut totals),
        median_max_count: crate::stats::median(&mut maxima),
        median_nonzero_genes: crate::stats::median(&mut nonzeros),
    };
    let json = serde_json::to_string_pretty(&summary).expect("summary serialises");
    crate::atomic::write_atomic(outputs.stage(out_dir.join("simulation.json"))?, |w| writeln!(w, "{json}"))?;
    outputs.commit()?;
    log::info!(
        "wrote {} training cells ({} non-zeros) and {} withheld test cells to {}",
        summary.train_cells, summary.train_nonzeros, summary.test_cells, out_dir.display()
    );
    Ok(summary)
}

/// Writes the batch's training (or withheld) cells; their obs rows are the last ones pushed.
fn write_split(writer: &mut LongCountsWriter, batch: &WellBatch, train: bool, obs: &ObsTable) -> Result<()> {
    let rows: Vec<usize> = (0..batch.cells.len()).filter(|&i| batch.cells[i].train == train).collect();
    if rows.is_empty() {
        return Ok(());
    }
    let part = batch.counts.take_rows(&rows);
    let ids = &obs.obs_id[obs.len() - rows.len()..];
    writer.write_cells(&part, 0..rows.len(), ids)
}

#[allow(clippy::too_many_arguments)]
fn simulate_well(
    config: &SimConfig,
    layout: &Layout,
    bio: &Biology,
    proportions: &[f64],
    library_factor: &[f64],
    cells_per_well: f64,
    task: u64,
    plate_idx: usize,
    well_idx: usize,
) -> WellBatch {
    let plate = &layout.plates[plate_idx];
    let well = &layout.wells[plate.layout][well_idx];
    let mut rng = stream(config.seed, Purpose::Wells, task);
    let expected = cells_per_well * bio.viability[well.compound];
    let n = if expected > 0.0 { Poisson::new(expected).expect("positive mean").sample(&mut rng) as usize } else { 0 };
    let mut unit_means: Vec<Option<Vec<f64>>> = vec![None; layout.cell_types.len()];
    let mut counts = CountMatrix::new(Vec::new());
    let mut cells = Vec::with_capacity(n);
    let (mut genes, mut values) = (Vec::new(), Vec::new());
    for i in 0..n {
        let index = (task << 24) | i as u64;
        let mut cell_rng = stream(config.seed, Purpose::Cells, index);
        let u: f64 = cell_rng.random();
        let mut t = 0;
        let mut acc = proportions[0];
        while u >= acc && t + 1 < proportions.len() {
            t += 1;
            acc += proportions[t];
        }
        let means = unit_means[t].get_or_insert_with(|| {
            let mut v = Vec::new();
            bio.unit_means(t, plate.donor, plate_idx, well.compound, &mut v);
            v
        });
        let z: f64 = StandardNormal.sample(&mut cell_rng);
        let library = config.cell_types[t].library_median * (config.library_sdlog * z).exp() * library_factor[plate_idx * 8 + well.row];
        genes.clear();
        values.clear();
        sampler::sample_nb_cell(&mut cell_rng, library, means, &bio.dispersion, &mut genes, &mut values);
        let train = !layout.is_withheld(t, well.compound);
        let excluded_gene = (train && !genes.is_empty() && cell_rng.random::<f64>() < config.excluded_rate)
            .then(|| genes[cell_rng.random_range(0..genes.len())]);
        counts.push_row(&genes, &values);
        cells.push(CellDraw { id: hash64(config.seed, index), plate: plate_idx, well: well_idx, cell_type: t, train, excluded_gene });
    }
    WellBatch { cells, counts }
}

/// True log2 fold changes of every compound (DMSO excepted) in every cell type, in the
/// de_train layout.
fn true_effects(layout: &Layout, bio: &Biology) -> DeTable {
    let mut table = DeTable { genes: layout.genes.clone(), ..Default::default() };
    for (k, c) in layout.compounds.iter().enumerate() {
        if c.kind == CompoundKind::NegativeControl {
            continue;
        }
        for (t, name) in layout.cell_types.iter().enumerate() {
            table.keys.push(DeRowKey {
                cell_type: name.clone(),
                sm_name: c.name.clone(),
                sm_lincs_id: c.lincs_id.clone(),
                smiles: c.smiles.clone(),
                control: c.kind == CompoundKind::PositiveControl,
            });
            table.values.extend(bio.log_fold_change(k, t).iter().map(|v| v / std::f64::consts::LN_2));
        }
    }
    table
}
