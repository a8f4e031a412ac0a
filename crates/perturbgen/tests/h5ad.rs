//! The `.h5ad` reader against files written by the real `anndata` package
//! (tests/python/h5ad_fixtures.py, run with the project's .venv python). The expected values are
//! what that script dumps from anndata/scipy/pandas, never what our reader returns.
use perturbgen::io::counts::GeneOrder;
use perturbgen::io::excluded::ExcludedIds;
use perturbgen::io::h5ad::{read_h5ad, read_h5ad_chunked, CountSource, H5adObs};
use perturbgen::{CountMatrix, Error};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

#[derive(Debug, Deserialize)]
struct Truth {
    obs_names: Vec<String>,
    columns: Vec<(String, Vec<String>)>,
    var_names: Vec<String>,
    counts: Option<Vec<Vec<u32>>>,
    bad: Option<Bad>,
}

#[derive(Debug, Deserialize)]
struct Bad {
    dataset: String,
    cell: String,
    gene: String,
}

/// Writes the fixtures once per test run (into cargo's per-target temp dir).
fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let python = root.join(".venv/bin/python");
        let script = root.join("tests/python/h5ad_fixtures.py");
        assert!(
            python.exists(),
            "{} not found: run scripts/setup (it creates .venv with the Python test dependencies, anndata among them)",
            python.display()
        );
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("h5ad-fixtures");
        let _ = std::fs::remove_dir_all(&dir);
        let out = Command::new(&python).arg(&script).arg(&dir).output().expect("run the fixture script");
        assert!(
            out.status.success(),
            "{} {} failed (is anndata installed? run scripts/setup):\n{}",
            python.display(),
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

fn file(name: &str) -> PathBuf {
    fixtures().join(format!("{name}.h5ad"))
}

fn truth(name: &str) -> Truth {
    let text = std::fs::read_to_string(fixtures().join(format!("{name}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn read(name: &str, source: &CountSource) -> (H5adObs, CountMatrix) {
    read_h5ad(&file(name), source, GeneOrder::FromFile, None).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn err(name: &str, source: &CountSource, genes: GeneOrder<'_>) -> String {
    match read_h5ad(&file(name), source, genes, None) {
        Ok(_) => panic!("{name}: read without error"),
        Err(e) => {
            let text = e.to_string();
            assert!(!text.contains('\n'), "error spans lines: {text}");
            text
        }
    }
}

/// CSR well-formed: rows strictly increasing in gene, no stored zeros.
fn check_csr(m: &CountMatrix) {
    assert_eq!(*m.indptr.last().unwrap() as usize, m.nnz());
    assert_eq!(m.data.len(), m.indices.len());
    for i in 0..m.n_cells() {
        let (idx, dat) = m.row(i);
        assert!(idx.windows(2).all(|w| w[0] < w[1]), "row {i} not sorted");
        assert!(idx.iter().all(|&g| (g as usize) < m.n_genes()));
        assert!(dat.iter().all(|&c| c > 0), "row {i} stores a zero");
    }
}

fn dense(m: &CountMatrix) -> Vec<Vec<u32>> {
    (0..m.n_cells()).map(|i| m.dense_row(i)).collect()
}

fn check_against_truth(name: &str, source: &CountSource) -> (H5adObs, CountMatrix) {
    let t = truth(name);
    let (obs, m) = read(name, source);
    check_csr(&m);
    assert_eq!(obs.obs_names, t.obs_names, "{name}: obs_names");
    assert_eq!(obs.columns, t.columns, "{name}: obs columns");
    assert_eq!(m.genes, t.var_names, "{name}: genes");
    assert_eq!(dense(&m), t.counts.unwrap(), "{name}: counts");
    (obs, m)
}

#[test]
fn csr_int32_in_x_matches_anndata_and_drops_stored_zeros() {
    let (obs, m) = check_against_truth("csr_int32", &CountSource::X);
    // The fixture stores one explicit zero; it must not be an entry.
    let nonzero: usize = truth("csr_int32").counts.unwrap().iter().flatten().filter(|&&c| c > 0).count();
    assert_eq!(m.nnz(), nonzero);
    assert_eq!(m.row(1).0.len(), 0, "cell_001 has no counts");
    let kinds: Vec<&str> = obs.columns.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(kinds, ["cell_type", "barcode", "sm_name", "col", "dose_uM", "frac32", "control", "plate"]);
    // Spot checks of the text rules on top of the comparison with anndata.
    assert_eq!(obs.column("cell_type").unwrap()[4], "", "NaN category");
    assert_eq!(obs.column("dose_uM").unwrap()[0], "", "NaN float");
    assert_eq!(obs.column("control").unwrap()[0], "True");
    assert_eq!(obs.column("col").unwrap()[0], "-5");
}

#[test]
fn float_csc_dense_and_compressed_layouts_match_anndata() {
    for name in ["csr_float32", "csc_int64", "dense_uint16", "dense_float64"] {
        check_against_truth(name, &CountSource::X);
    }
}

#[test]
fn legacy_anndata_layout_reads_like_anndata_does() {
    let (obs, _) = check_against_truth("legacy", &CountSource::X);
    assert_eq!(obs.column("cell_type").unwrap()[..3], ["B", "T", "B"]);
}

#[test]
fn nullable_and_categorical_obs_columns_match_anndata() {
    let (obs, _) = check_against_truth("nullable", &CountSource::X);
    assert_eq!(obs.obs_names[0], "cell_000", "index named obs_id, stored as nullable-string-array");
    assert_eq!(obs.column("s_nullable").unwrap()[..2], ["", "s1"]);
    assert_eq!(obs.column("i_nullable").unwrap()[..2], ["", "1"]);
    assert_eq!(obs.column("b_nullable").unwrap()[..3], ["", "True", "False"]);
    assert_eq!(obs.column("cat_int").unwrap()[..2], ["0", "10"]);
}

#[test]
fn counts_layer_is_read_when_x_holds_normalised_values() {
    check_against_truth("layers", &CountSource::Layer("counts".into()));
    let e = err("layers", &CountSource::X, GeneOrder::FromFile);
    assert!(e.contains("layers.h5ad") && e.contains("`X/data`") && e.contains("expected a whole non-negative count"), "{e}");
}

#[test]
fn raw_x_takes_its_genes_from_raw_var() {
    let (_, m) = check_against_truth("raw", &CountSource::RawX);
    assert_eq!(m.n_genes(), 12);
    // X of the same file is the 4-gene normalised subset.
    let e = err("raw", &CountSource::X, GeneOrder::FromFile);
    assert!(e.contains("expected a whole non-negative count"), "{e}");
}

#[test]
fn chunk_size_and_thread_count_do_not_change_the_result() {
    for (name, source) in [
        ("csr_int32", CountSource::X),
        ("csr_float32", CountSource::X),
        ("csc_int64", CountSource::X),
        ("dense_uint16", CountSource::X),
        ("layers", CountSource::Layer("counts".into())),
    ] {
        let reference = read(name, &source);
        let excluded = ExcludedIds { pairs: vec![("cell_000".into(), "gene03".into())] };
        let ref_excluded = read_h5ad(&file(name), &source, GeneOrder::FromFile, Some(&excluded)).unwrap();
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            for chunk in [1, 5, 17, 1 << 22] {
                let got = pool.install(|| read_h5ad_chunked(&file(name), &source, GeneOrder::FromFile, None, chunk)).unwrap();
                assert_eq!(got, reference, "{name}: {threads} threads, chunks of {chunk}");
                let got = pool
                    .install(|| read_h5ad_chunked(&file(name), &source, GeneOrder::FromFile, Some(&excluded), chunk))
                    .unwrap();
                assert_eq!(got, ref_excluded, "{name} with exclusions: {threads} threads, chunks of {chunk}");
            }
        }
    }
}

#[test]
fn given_gene_order_reorders_and_pads_with_zero_columns() {
    for name in ["csr_int32", "csc_int64", "dense_float64"] {
        let t = truth(name);
        let counts = t.counts.unwrap();
        let mut list: Vec<String> = t.var_names.iter().rev().cloned().collect();
        list.insert(3, "NOT_IN_FILE".into());
        list.push("ALSO_ABSENT".into());
        let (_, m) = read_h5ad(&file(name), &CountSource::X, GeneOrder::Given(&list), None).unwrap();
        check_csr(&m);
        assert_eq!(m.genes, list);
        for (i, row) in counts.iter().enumerate() {
            let got = m.dense_row(i);
            for (c, gene) in list.iter().enumerate() {
                let want = t.var_names.iter().position(|g| g == gene).map_or(0, |j| row[j]);
                assert_eq!(got[c], want, "{name}: cell {i}, gene {gene}");
            }
        }
        // FromFile: the var order.
        let (_, m) = read(name, &CountSource::X);
        assert_eq!(m.genes, t.var_names);
    }
}

#[test]
fn a_file_gene_outside_the_given_list_is_refused() {
    let t = truth("csr_int32");
    let list: Vec<String> = t.var_names.iter().filter(|g| *g != "gene03").cloned().collect();
    let e = err("csr_int32", &CountSource::X, GeneOrder::Given(&list));
    assert!(e.contains("csr_int32.h5ad") && e.contains("`gene03`") && e.contains("gene list"), "{e}");
}

#[test]
fn excluded_pairs_are_dropped_in_every_layout() {
    for name in ["csr_int32", "csc_int64", "dense_uint16", "legacy"] {
        let t = truth(name);
        let counts = t.counts.unwrap();
        // Three pairs that have counts, one unknown cell, one unknown gene.
        let mut drop = Vec::new();
        'find: for (i, row) in counts.iter().enumerate() {
            for (j, &c) in row.iter().enumerate() {
                if c > 0 && (i + j) % 3 == 0 {
                    drop.push((i, j));
                    if drop.len() == 3 {
                        break 'find;
                    }
                }
            }
        }
        assert_eq!(drop.len(), 3);
        let mut pairs: Vec<(String, String)> = drop.iter().map(|&(i, j)| (t.obs_names[i].clone(), t.var_names[j].clone())).collect();
        pairs.push(("no_such_cell".into(), t.var_names[0].clone()));
        pairs.push((t.obs_names[0].clone(), "no_such_gene".into()));
        let excluded = ExcludedIds { pairs };
        let (_, m) = read_h5ad(&file(name), &CountSource::X, GeneOrder::FromFile, Some(&excluded)).unwrap();
        check_csr(&m);
        for (i, row) in counts.iter().enumerate() {
            let want: Vec<u32> = row.iter().enumerate().map(|(j, &c)| if drop.contains(&(i, j)) { 0 } else { c }).collect();
            assert_eq!(m.dense_row(i), want, "{name}: cell {i}");
        }
        let total: usize = counts.iter().flatten().filter(|&&c| c > 0).count();
        assert_eq!(m.nnz(), total - 3, "{name}: excluded entries are not stored");
    }
}

#[test]
fn non_integer_counts_are_refused_naming_file_dataset_cell_and_gene() {
    for (name, found) in [
        ("bad_fractional", "2.5"),
        ("bad_negative", "-3"),
        ("bad_nan", "NaN"),
        ("bad_csc", "0.25"),
        ("bad_dense", "1.5"),
    ] {
        let bad = truth(name).bad.unwrap();
        for chunk in [3, 1 << 22] {
            let e = read_h5ad_chunked(&file(name), &CountSource::X, GeneOrder::FromFile, None, chunk).unwrap_err().to_string();
            assert!(!e.contains('\n'), "{e}");
            for part in [
                format!("{name}.h5ad"),
                format!("`{}`", bad.dataset),
                format!("cell `{}`", bad.cell),
                format!("gene `{}`", bad.gene),
                format!("found {found}"),
            ] {
                assert!(e.contains(&part), "{name}: `{part}` missing from: {e}");
            }
        }
    }
}

#[test]
fn broken_files_and_missing_or_mismatched_parts_are_refused() {
    for name in ["not_hdf5", "truncated"] {
        let e = err(name, &CountSource::X, GeneOrder::FromFile);
        assert!(e.starts_with(&file(name).display().to_string()) && e.contains(": not a readable HDF5/AnnData file ("), "{e}");
    }
    match read_h5ad(&fixtures().join("absent.h5ad"), &CountSource::X, GeneOrder::FromFile, None) {
        Err(Error::Io { .. }) => {}
        other => panic!("missing file: {other:?}"),
    }
    let e = err("csr_int32", &CountSource::Layer("counts".into()), GeneOrder::FromFile);
    assert!(e.ends_with("csr_int32.h5ad: no `layers/counts` (layers present: none)"), "{e}");
    let e = err("layers", &CountSource::Layer("raw_counts".into()), GeneOrder::FromFile);
    assert!(e.ends_with("layers.h5ad: no `layers/raw_counts` (layers present: counts, spliced)"), "{e}");
    let e = err("csr_int32", &CountSource::RawX, GeneOrder::FromFile);
    assert!(e.ends_with("csr_int32.h5ad: no `raw/X` (the file has no `raw`)"), "{e}");
    let e = err("bad_obs_len", &CountSource::X, GeneOrder::FromFile);
    assert!(e.ends_with("bad_obs_len.h5ad: X has 23 rows but obs has 20 cells"), "{e}");
}
