//! `pgen-external`: another model's generated cells (CPA, scGen, scVI, … as an AnnData file) on
//! the same yardstick as ours. The cells are checked (whole non-negative counts, the pipeline's
//! genes by name in any order, an obs with cell type / compound / donor / plate / well), the
//! target pairs' cells are summed into pseudo-bulk samples exactly as pgen-pseudobulk sums real
//! cells, and those samples go through the same limma contrast as pgen-generate's
//! `reference: real` ([`crate::limma::de_with_predicted`]: the target cell type's real samples
//! of the training pseudo-bulk, the targets contrasted against its real negative-control wells).
use crate::cells::Cells;
use crate::error::{Error, Result};
use crate::io::counts::GeneOrder;
use crate::io::h5ad::{read_h5ad, read_h5ad_obs, read_h5ad_var_names, CountSource};
use crate::io::id_map::IdMap;
use crate::io::obs::{ColumnMap, ObsTable};
use crate::pseudobulk::PseudoBulk;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

/// An AnnData file of generated cells and how to read it.
pub struct ExternalCells<'a> {
    pub path: &'a Path,
    /// Where the counts are (`X`, `raw/X`, `layers/<name>`).
    pub source: &'a CountSource,
    /// The file's own obs column names (config `external.obs`, like `input.columns`).
    pub columns: &'a ColumnMap,
}

/// Reads and checks the cells of `external` and sums the target pairs' cells into pseudo-bulk
/// samples (per cell type × plate × well, as [`PseudoBulk::from_cells`]) over `real`'s genes, in
/// `real`'s gene order. Cells of pairs that are not targets are left out (logged). Errors (one
/// line, naming the file): a missing obs column, a gene of the pipeline the file lacks or a gene
/// it does not know, a count that is not a whole non-negative number, a target pair without
/// cells, a well whose cells disagree on compound/donor, a sample the training pseudo-bulk
/// already has.
///
/// The samples' descriptive fields the file does not give (sm_lincs_id and SMILES left empty, no
/// `control` column) are taken from the training samples of the same compound, so that the
/// prediction's rows carry them as the other routes' do.
pub fn external_pseudobulk(external: &ExternalCells<'_>, real: &PseudoBulk, targets: &IdMap) -> Result<PseudoBulk> {
    let path = external.path;
    // obs first: a missing column is found before the counts are read.
    let raw_obs = read_h5ad_obs(path)?;
    ObsTable::from_text_columns(path, &raw_obs.obs_names, &raw_obs.columns, external.columns)?;
    let var_names = read_h5ad_var_names(path, external.source)?;
    let present: BTreeSet<&str> = var_names.iter().map(String::as_str).collect();
    let missing: Vec<&str> = real.genes.iter().map(String::as_str).filter(|g| !present.contains(g)).collect();
    if let Some(first) = missing.first() {
        return Err(Error::invalid(
            path,
            format!("gene `{first}` of the pipeline's genes is not in the file's var names ({} of {} missing; the cells must have every gene the pseudo-bulk has)", missing.len(), real.genes.len()),
        ));
    }
    // Every file gene is one of the pipeline's (an unknown one is the reader's error); columns
    // land in the pipeline's order whatever the file's order.
    let (raw_obs, counts) = read_h5ad(path, external.source, GeneOrder::Given(&real.genes), None)?;
    let obs = ObsTable::from_text_columns(path, &raw_obs.obs_names, &raw_obs.columns, external.columns)?;
    let cells = Cells { obs, counts };
    log::info!("{}: {} cells × {} genes ({} non-zeros)", path.display(), cells.len(), cells.counts.n_genes(), cells.counts.nnz());

    let wanted: BTreeSet<(&str, &str)> = targets.rows.iter().map(|r| (r.cell_type.as_str(), r.sm_name.as_str())).collect();
    let mut keep = Vec::new();
    let mut others: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut per_target: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for i in 0..cells.len() {
        let pair = (cells.obs.cell_type.get(i), cells.obs.sm_name.get(i));
        if let Some(&t) = wanted.get(&pair) {
            keep.push(i);
            *per_target.entry(t).or_default() += 1;
        } else {
            *others.entry((pair.0.to_string(), pair.1.to_string())).or_default() += 1;
        }
    }
    if !others.is_empty() {
        let n: usize = others.values().sum();
        let shown: Vec<String> = others.keys().take(5).map(|(c, s)| format!("{c}|{s}")).collect();
        log::info!(
            "{}: {n} cells of {} pairs that are not targets are left out ({}{})",
            path.display(),
            others.len(),
            shown.join(", "),
            if others.len() > shown.len() { ", …" } else { "" }
        );
    }
    if let Some(r) = targets.rows.iter().find(|r| !per_target.contains_key(&(r.cell_type.as_str(), r.sm_name.as_str()))) {
        return Err(Error::invalid(path, format!("no cells of target pair `{}|{}` (cell_type|sm_name; {} of {} target pairs have cells)", r.cell_type, r.sm_name, per_target.len(), wanted.len())));
    }
    let kept = cells.take(&keep);
    let pb = PseudoBulk::from_cells(&[(&kept, path)])?;
    // The samples in target (id_map) order, then plate and well: the order in which
    // pgen-generate hands its generated groups to limma, so that the same cells give the same
    // floating-point path through the fit.
    let rank: HashMap<(&str, &str), usize> = targets.rows.iter().enumerate().rev().map(|(i, r)| ((r.cell_type.as_str(), r.sm_name.as_str()), i)).collect();
    let mut order: Vec<usize> = (0..pb.n_samples()).collect();
    order.sort_by_key(|&i| {
        let k = &pb.keys[i];
        (rank[&(k.cell_type.as_str(), k.sm_name.as_str())], k.plate_name.clone(), k.well.clone())
    });
    let mut pb = PseudoBulk {
        keys: order.iter().map(|&i| pb.keys[i].clone()).collect(),
        n_cells: order.iter().map(|&i| pb.n_cells[i]).collect(),
        counts: order.iter().flat_map(|&i| pb.sample(i).iter().copied()).collect(),
        genes: pb.genes,
    };

    // A sample must be new to limma: the same cell type × plate × well among the real samples
    // would be one well counted twice.
    let real_wells: BTreeSet<(&str, &str, &str)> = real.keys.iter().map(|k| (k.cell_type.as_str(), k.plate_name.as_str(), k.well.as_str())).collect();
    if let Some(k) = pb.keys.iter().find(|k| real_wells.contains(&(k.cell_type.as_str(), k.plate_name.as_str(), k.well.as_str()))) {
        return Err(Error::invalid(path, format!("the cells of `{}|{}` in plate {} well {} fall in a well the training pseudo-bulk already has for {}", k.cell_type, k.sm_name, k.plate_name, k.well, k.cell_type)));
    }
    let has_control = raw_obs.column(external.columns.name("control")).is_some();
    let known: HashMap<&str, &crate::pseudobulk::GroupKey> = real.keys.iter().rev().map(|k| (k.sm_name.as_str(), k)).collect();
    for key in &mut pb.keys {
        if let Some(r) = known.get(key.sm_name.as_str()) {
            if key.sm_lincs_id.is_empty() {
                key.sm_lincs_id.clone_from(&r.sm_lincs_id);
            }
            if key.smiles.is_empty() {
                key.smiles.clone_from(&r.smiles);
            }
            if !has_control {
                key.control = r.control;
            }
        }
    }
    let n_cells: u64 = pb.n_cells.iter().sum();
    log::info!("{} pseudo-bulk samples of {} target pairs from {n_cells} cells", pb.n_samples(), wanted.len());
    Ok(pb)
}
