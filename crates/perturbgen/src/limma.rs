//! The limma stage: the official DE recipe (SPEC §3) runs in R (`scripts/limma_de.R`, Debian's
//! limma + edgeR); this module hands it one cell type's pseudo-bulk through an exchange folder
//! and turns its logFC / P.Value into signed −log10 P rows in the de_train layout, keeping
//! limma's own numbers beside them ([`DeStats`]).
//!
//! Exchange folder (transient, raw little-endian float64 so that no value is rounded on the way):
//! `genes.txt`, `samples.tsv`, `counts.f64` (genes × samples, column-major) in;
//! `compounds.txt`, `logfc.f64`, `pvalue.f64`, `tstat.f64`, `adjpvalue.f64` (genes × compounds,
//! column-major) and `aveexpr.f64` (genes) out.
use crate::error::{Error, Result};
use crate::io::de_stats::DeStats;
use crate::io::de_table::{DeRowKey, DeTable};
use crate::io::id_map::IdMap;
use crate::pseudobulk::PseudoBulk;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, Clone)]
pub struct LimmaConfig {
    pub rscript: PathBuf,
    pub script: PathBuf,
    pub design: crate::design::Design,
    pub negative_control: String,
    pub threads: usize,
}

/// sign(logFC) · −log10(P), with P = 0 replaced by machine epsilon (SPEC §3 step 4).
pub fn signed_log_p(log_fc: f64, p: f64) -> f64 {
    let p = if p <= 0.0 { f64::EPSILON } else { p };
    let sign = if log_fc > 0.0 { 1.0 } else if log_fc < 0.0 { -1.0 } else { 0.0 };
    sign * -p.log10()
}

impl LimmaConfig {
    /// The settings an .h5ad of these results records in `uns/settings`.
    pub fn settings(&self) -> Vec<(String, String)> {
        vec![
            ("method".into(), "edgeR TMM -> voom -> lmFit -> contrasts.fit (compound - negative control) -> eBayes -> topTable".into()),
            ("design".into(), self.design.as_str().to_string()),
            ("negative_control".into(), self.negative_control.clone()),
            ("X".into(), "sign(logFC) * -log10(P.Value), P.Value = 0 replaced by machine epsilon".into()),
            ("adj.P.Val".into(), "Benjamini-Hochberg over the genes of each (cell type, compound) contrast".into()),
        ]
    }
}

/// Runs limma for one cell type. `pairs`, when given, keeps only those compounds.
pub fn run_limma(pb: &PseudoBulk, cell_type: &str, config: &LimmaConfig, pairs: Option<&IdMap>, pb_path: &Path) -> Result<DeTable> {
    run_limma_stats(pb, cell_type, config, pairs, pb_path).map(|s| s.table())
}

/// [`run_limma`] with every statistic limma gives per gene (its `route` left empty for the
/// caller to name).
pub fn run_limma_stats(pb: &PseudoBulk, cell_type: &str, config: &LimmaConfig, pairs: Option<&IdMap>, pb_path: &Path) -> Result<DeStats> {
    run_limma_marked(pb, None, cell_type, config, pairs, pb_path)
}

/// [`run_limma_stats`] on the `real` samples and the `predicted` ones together, the residual
/// variance the real samples' alone (`pgen-limma --predicted`; [`de_with_predicted`] for every
/// target cell type).
pub fn run_limma_with_predicted(real: &PseudoBulk, predicted: &PseudoBulk, cell_type: &str, config: &LimmaConfig, pairs: Option<&IdMap>, real_path: &Path) -> Result<DeStats> {
    let mut combined = real.clone();
    combined.keys.extend(predicted.keys.iter().cloned());
    combined.n_cells.extend(&predicted.n_cells);
    combined.counts.extend(&predicted.counts);
    let mask: Vec<bool> = (0..combined.n_samples()).map(|i| i >= real.n_samples()).collect();
    run_limma_marked(&combined, Some(&mask), cell_type, config, pairs, real_path)
}

/// [`run_limma_stats`] with the samples a model predicted marked (`predicted[i]` for sample i
/// of `pb`): limma takes the residual variance from the real samples alone
/// (scripts/limma_de.R, column `predicted`).
fn run_limma_marked(pb: &PseudoBulk, predicted: Option<&[bool]>, cell_type: &str, config: &LimmaConfig, pairs: Option<&IdMap>, pb_path: &Path) -> Result<DeStats> {
    let rows = pb.rows_of_cell_type(cell_type);
    let sub = pb.take(&rows);
    let marks: Option<Vec<bool>> = predicted.map(|p| rows.iter().map(|&i| p[i]).collect());
    if sub.n_samples() == 0 {
        return Err(Error::invalid(pb_path, format!("no pseudo-bulk samples of cell type `{cell_type}`")));
    }
    if !sub.keys.iter().any(|k| k.sm_name == config.negative_control) {
        let mut present: Vec<&str> = sub.keys.iter().map(|k| k.sm_name.as_str()).collect();
        present.sort();
        present.dedup();
        return Err(Error::Data(format!(
            "{cell_type}: unknown negative control `{}` (no such samples; compounds present: {})",
            config.negative_control,
            present.join(", ")
        )));
    }
    if sub.keys.iter().all(|k| k.sm_name == config.negative_control) {
        // A cell type measured only under the negative control has no contrast to fit: it adds
        // no de_train rows, but it can still be a target (its truth comes from held-out cells).
        log::info!("{cell_type}: only `{}` samples, no compound to contrast: no DE rows", config.negative_control);
        if let Some(pairs) = pairs {
            if let Some(r) = pairs.rows.iter().find(|r| r.cell_type == cell_type) {
                return Err(Error::Data(format!("{cell_type}: target compound `{}` has no pseudo-bulk samples", r.sm_name)));
            }
        }
        return Ok(DeStats { genes: sub.genes.clone(), settings: config.settings(), ..Default::default() });
    }
    if !config.script.is_file() {
        return Err(Error::invalid(&config.script, "no such R script (--script: the limma recipe, scripts/limma_de.R of the repository)"));
    }
    let work = exchange_folder()?;
    let (input, output, r_tmp) = (work.path().join("in"), work.path().join("out"), work.path().join("rtmp"));
    write_exchange(&sub, marks.as_deref(), &input)?;
    for dir in [&output, &r_tmp] {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    log::info!("{cell_type}: limma on {} samples × {} genes", sub.n_samples(), sub.genes.len());
    let result = Command::new(&config.rscript)
        .arg(&config.script)
        .arg("--input").arg(&input)
        .arg("--output").arg(&output)
        .arg("--design").arg(config.design.as_str())
        .arg("--control").arg(&config.negative_control)
        .arg("--threads").arg(config.threads.to_string())
        // R's own temporary folder (Rtmp*) inside the exchange folder: removed with it, also
        // by the next run when a kill -9 left both.
        .env("TMPDIR", &r_tmp)
        .env("OMP_NUM_THREADS", config.threads.to_string())
        .env("OPENBLAS_NUM_THREADS", config.threads.to_string())
        .output()
        .map_err(|e| Error::R(format!("cannot run `{}` (R with limma and edgeR; see scripts/setup): {e}", config.rscript.display())))?;
    let stderr = String::from_utf8_lossy(&result.stderr);
    for line in stderr.lines() {
        log::debug!("R: {line}");
    }
    if !result.status.success() {
        let line = stderr.lines().rev().find(|l| l.starts_with("error:") || l.starts_with("Error")).or_else(|| stderr.lines().rev().find(|l| !l.trim().is_empty()))
            .unwrap_or("R stopped without a message");
        // The script's messages already name the cell type.
        let line = line.trim_start_matches("error:").trim();
        return Err(Error::R(format!("limma: {line}")));
    }
    // The script's own notes (a design term dropped for a single level, a non-estimable
    // nuisance coefficient) are what a user of another study layout needs to see.
    for line in stderr.lines().filter(|l| l.contains("not estimable") || l.starts_with("limma_de: ")) {
        log::info!("{cell_type}: {line}");
    }
    let mut stats = read_results(&sub, cell_type, &output, pairs)?;
    stats.settings = config.settings();
    Ok(stats)
}

const EXCHANGE_PREFIX: &str = "pgen-limma-";

/// A fresh exchange folder `$TMPDIR/pgen-limma-<pid>-<random>`, removed when dropped; first
/// removes the folders of runs whose process is gone (a kill -9 leaves them; ~80 MB each at
/// Kaggle size, and nothing else would ever remove them).
fn exchange_folder() -> Result<tempfile::TempDir> {
    let tmp = std::env::temp_dir();
    if let Ok(entries) = std::fs::read_dir(&tmp) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(EXCHANGE_PREFIX)).and_then(|rest| rest.split_once('-')).and_then(|(pid, _)| pid.parse::<u32>().ok()) else { continue };
            if !crate::atomic::process_alive(pid) {
                log::info!("removing {} (left by a killed limma run, process {pid})", entry.path().display());
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    tempfile::Builder::new().prefix(&format!("{EXCHANGE_PREFIX}{}-", std::process::id())).tempdir().map_err(|e| Error::io(tmp, e))
}

/// The DE of predicted samples (forest predictions, generated cells' pseudo-bulk): per target
/// cell type, limma on its `real` samples together with the `predicted` ones, the targets'
/// contrasts against the real negative-control samples, the residual variance the real
/// samples' alone (the predicted ones are marked: without their own sampling noise, their
/// replicates would shrink every gene's variance, the more the more targets are fitted
/// together); one table in id_map order.
/// Returns limma's statistics ([`DeStats::table`] is the prediction, rows in the order of
/// [`crate::baseline::merge_tables`]); the caller names its `route`.
pub fn de_with_predicted(real: &PseudoBulk, predicted: &PseudoBulk, targets: &IdMap, config: &LimmaConfig, real_path: &Path) -> Result<DeStats> {
    let cell_types: std::collections::BTreeSet<&str> = targets.rows.iter().map(|r| r.cell_type.as_str()).collect();
    let mut tables = Vec::new();
    for ct in cell_types {
        let stats = run_limma_with_predicted(real, predicted, ct, config, Some(targets), real_path)?;
        tables.push((stats, PathBuf::from(format!("limma:{ct}"))));
    }
    DeStats::merge(tables)
}

/// The name the real negative-control samples take in [`de_against_predicted_controls`].
pub fn measured_control_name(negative_control: &str) -> String {
    format!("{negative_control} (measured)")
}

/// Like [`de_with_predicted`], but the targets' contrasts are taken against the model's own
/// predictions of the target cell type's negative-control wells (in `predicted`, under the
/// negative control's name): the real negative-control samples are renamed
/// ([`measured_control_name`]) and stay in the fit as one more level. A model's bias — what it
/// gets wrong about the cell type as a whole — is in both sides of every contrast and cancels,
/// while the residual variance still comes from the real samples (noise-free predictions alone
/// would make limma certain of every difference).
pub fn de_against_predicted_controls(real: &PseudoBulk, predicted: &PseudoBulk, targets: &IdMap, config: &LimmaConfig, real_path: &Path) -> Result<DeStats> {
    let nc = &config.negative_control;
    for ct in targets.rows.iter().map(|r| r.cell_type.as_str()) {
        if !predicted.keys.iter().any(|k| k.cell_type == ct && k.sm_name == *nc) {
            return Err(Error::Data(format!("{ct}: no predicted negative-control (`{nc}`) samples to contrast the targets against")));
        }
    }
    let mut renamed = real.clone();
    let measured = measured_control_name(nc);
    for k in renamed.keys.iter_mut().filter(|k| k.sm_name == *nc) {
        k.sm_name.clone_from(&measured);
    }
    de_with_predicted(&renamed, predicted, targets, config, real_path)
}

fn write_exchange(pb: &PseudoBulk, predicted: Option<&[bool]>, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    crate::io::genes::write_gene_list(&dir.join("genes.txt"), &pb.genes)?;
    crate::atomic::write_atomic(dir.join("samples.tsv"), |w| {
        writeln!(w, "sample\tsm_name\tdonor_id\tplate_name\trow\twell\tcell_type\tn_cells{}", if predicted.is_some() { "\tpredicted" } else { "" })?;
        for (i, k) in pb.keys.iter().enumerate() {
            write!(w, "s{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}", i + 1, k.sm_name, k.donor_id, k.plate_name, k.row, k.well, k.cell_type, pb.n_cells[i])?;
            match predicted {
                Some(p) => writeln!(w, "\t{}", u8::from(p[i]))?,
                None => writeln!(w)?,
            }
        }
        Ok(())
    })?;
    // samples × genes row-major is genes × samples column-major.
    crate::atomic::write_atomic(dir.join("counts.f64"), |w| {
        for v in &pb.counts {
            w.write_all(&v.to_le_bytes())?;
        }
        Ok(())
    })
}

fn read_f64s(path: &Path, n: usize) -> Result<Vec<f64>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.len() != n * 8 {
        return Err(Error::invalid(path, format!("{} bytes, expected {} float64 values", bytes.len(), n)));
    }
    Ok(bytes.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes"))).collect())
}

fn read_results(pb: &PseudoBulk, cell_type: &str, dir: &Path, pairs: Option<&IdMap>) -> Result<DeStats> {
    let compounds_path = dir.join("compounds.txt");
    let text = std::fs::read_to_string(&compounds_path).map_err(|e| Error::io(&compounds_path, e))?;
    let compounds: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    let g = pb.genes.len();
    let n = g * compounds.len();
    let log_fc = read_f64s(&dir.join("logfc.f64"), n)?;
    let p = read_f64s(&dir.join("pvalue.f64"), n)?;
    let t = read_f64s(&dir.join("tstat.f64"), n)?;
    let adj_p = read_f64s(&dir.join("adjpvalue.f64"), n)?;
    let ave_expr = read_f64s(&dir.join("aveexpr.f64"), g)?;
    let mut stats = DeStats { genes: pb.genes.clone(), ..Default::default() };
    for (k, name) in compounds.iter().enumerate() {
        if let Some(pairs) = pairs {
            if !pairs.rows.iter().any(|r| r.cell_type == cell_type && r.sm_name == *name) {
                continue;
            }
        }
        let key = pb.keys.iter().find(|key| key.sm_name == *name).expect("R reports compounds of the samples");
        stats.keys.push(DeRowKey {
            cell_type: cell_type.to_string(),
            sm_name: name.to_string(),
            sm_lincs_id: key.sm_lincs_id.clone(),
            smiles: key.smiles.clone(),
            control: key.control,
        });
        let block = k * g..(k + 1) * g;
        for j in 0..g {
            if !signed_log_p(log_fc[k * g + j], p[k * g + j]).is_finite() {
                return Err(Error::invalid(dir, format!("{cell_type}: limma gave a non-finite value for {name}, gene {}", pb.genes[j])));
            }
        }
        stats.log_fc.extend_from_slice(&log_fc[block.clone()]);
        stats.p_value.extend_from_slice(&p[block.clone()]);
        stats.t.extend_from_slice(&t[block.clone()]);
        stats.adj_p_value.extend_from_slice(&adj_p[block]);
        stats.ave_expr.extend_from_slice(&ave_expr);
    }
    if let Some(pairs) = pairs {
        for r in pairs.rows.iter().filter(|r| r.cell_type == cell_type) {
            if !stats.keys.iter().any(|k| k.sm_name == r.sm_name) {
                return Err(Error::Data(format!("{cell_type}: target compound `{}` has no pseudo-bulk samples", r.sm_name)));
            }
        }
    }
    Ok(stats)
}
