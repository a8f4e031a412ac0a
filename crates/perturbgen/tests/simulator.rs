//! The simulator produces what it was asked for: cell-type shares, library sizes, sparsity,
//! effect signs, withheld test pairs, the real Kaggle layout, and identical bytes per seed.
use perturbgen::io::counts::{read_long_counts, GeneOrder};
use perturbgen::io::de_table::DeTable;
use perturbgen::io::id_map::IdMap;
use perturbgen::simulate::layout::{CompoundKind, Layout, DMSO, POSITIVE_CONTROLS};
use perturbgen::simulate::{simulate, Preset, SimConfig};
use perturbgen::{CountMatrix, ObsTable};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

fn kaggle_layout_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/kaggle-layout");
    assert!(dir.join("genes.txt").exists(), "the real layout files are expected at {} (../shared beside the repo)", dir.display());
    dir
}

fn run(config: &SimConfig, threads: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    perturbgen::threads::with_threads(threads, || simulate(config, dir.path())).unwrap().unwrap();
    dir
}

fn load(dir: &Path, counts: &str, obs: &str) -> (ObsTable, CountMatrix) {
    let o = ObsTable::read(&dir.join(obs)).unwrap();
    let m = read_long_counts(&dir.join(counts), &o, GeneOrder::FromFile, None).unwrap();
    (o, m)
}

fn demo() -> SimConfig {
    let mut c = SimConfig::preset(Preset::Demo);
    c.seed = 11;
    c
}

#[test]
fn cell_type_shares_and_library_sizes_match_the_request() {
    let config = demo();
    let dir = run(&config, 2);
    let (train_obs, train) = load(dir.path(), "adata_train.parquet", "adata_obs_meta.csv");
    let (test_obs, _) = load(dir.path(), "truth/adata_test.parquet", "truth/adata_test_obs_meta.csv");
    let n = train_obs.len() + test_obs.len();
    // Training cells near the requested number (Poisson well sizes: a few percent).
    let ratio = train_obs.len() as f64 / config.n_train_cells as f64;
    assert!((0.93..1.07).contains(&ratio), "train cells {} vs {}", train_obs.len(), config.n_train_cells);

    let total_share: f64 = config.cell_types.iter().map(|c| c.proportion).sum();
    for spec in &config.cell_types {
        let count = train_obs.cell_type.iter().chain(test_obs.cell_type.iter()).filter(|t| *t == spec.name).count();
        let p = spec.proportion / total_share;
        let se = (p * (1.0 - p) / n as f64).sqrt();
        let got = count as f64 / n as f64;
        assert!((got - p).abs() < 4.0 * se, "{}: share {got:.4} vs {p:.4} (se {se:.4})", spec.name);
    }

    // Median library size of untreated (DMSO) cells per cell type ≈ the configured median.
    let totals = train.cell_totals();
    for spec in &config.cell_types {
        let mut t: Vec<f64> = (0..train_obs.len())
            .filter(|&i| train_obs.cell_type.get(i) == spec.name && train_obs.sm_name.get(i) == DMSO)
            .map(|i| totals[i] as f64)
            .collect();
        assert!(t.len() > 30, "{}: {} DMSO cells", spec.name, t.len());
        let med = perturbgen::stats::median(&mut t);
        assert!((med / spec.library_median - 1.0).abs() < 0.12, "{}: median total {med} vs {}", spec.name, spec.library_median);
    }

    // Sparse like scRNA-seq: most genes zero in most cells; max counts of tens to hundreds.
    let mut nz: Vec<f64> = train.cell_nnz().iter().map(|&k| k as f64 / train.n_genes() as f64).collect();
    let mut mx: Vec<f64> = train.cell_max().iter().map(|&k| k as f64).collect();
    assert!(perturbgen::stats::median(&mut nz) < 0.6);
    let med_max = perturbgen::stats::median(&mut mx);
    assert!((30.0..600.0).contains(&med_max), "median max count {med_max}");
}

/// log mean CP10k expression per gene over the given cells.
fn log_mean_expression(m: &CountMatrix, cells: &[usize]) -> Vec<f64> {
    let mut sum = vec![0.0; m.n_genes()];
    for &i in cells {
        let (idx, dat) = m.row(i);
        let total: f64 = dat.iter().map(|&c| c as f64).sum();
        for (&g, &c) in idx.iter().zip(dat) {
            sum[g as usize] += c as f64 / total * 1e4;
        }
    }
    sum.iter().map(|s| (s / cells.len() as f64 + 1e-3).ln()).collect()
}

#[test]
fn observed_changes_follow_the_true_effects() {
    let config = demo();
    let dir = run(&config, 2);
    let (obs, m) = load(dir.path(), "adata_train.parquet", "adata_obs_meta.csv");
    let truth = DeTable::read(&dir.path().join("truth/true_effects.parquet")).unwrap();
    let (mut agree, mut total) = (0usize, 0usize);
    for (r, key) in truth.keys.iter().enumerate() {
        let cells_of = |compound: &str| -> Vec<usize> {
            (0..obs.len()).filter(|&i| obs.cell_type.get(i) == key.cell_type && obs.sm_name.get(i) == compound).collect()
        };
        let (treated, control) = (cells_of(&key.sm_name), cells_of(DMSO));
        if treated.len() < 20 {
            continue;
        }
        let (lt, lc) = (log_mean_expression(&m, &treated), log_mean_expression(&m, &control));
        for (g, &lfc) in truth.row(r).iter().enumerate() {
            // Strong effects on genes expressed enough to see them.
            if lfc.abs() > 1.5 && lc[g] > 2.0 {
                total += 1;
                agree += ((lt[g] - lc[g]).signum() == lfc.signum()) as usize;
            }
        }
    }
    assert!(total > 100, "only {total} strong effects checked");
    let share = agree as f64 / total as f64;
    assert!(share > 0.9, "sign agreement {share:.3} over {total} strong effects");
}

#[test]
fn test_pairs_are_withheld_and_listed() {
    let config = demo();
    let dir = run(&config, 1);
    let ids = IdMap::read(&dir.path().join("id_map.csv")).unwrap();
    let train = ObsTable::read(&dir.path().join("adata_obs_meta.csv")).unwrap();
    let test = ObsTable::read(&dir.path().join("truth/adata_test_obs_meta.csv")).unwrap();
    let pairs = |o: &ObsTable| -> HashSet<(String, String)> { (0..o.len()).map(|i| (o.cell_type.get(i).to_string(), o.sm_name.get(i).to_string())).collect() };
    let (train_pairs, test_pairs) = (pairs(&train), pairs(&test));
    assert!(!ids.rows.is_empty());
    for row in &ids.rows {
        assert!(["B cells", "Myeloid cells"].contains(&row.cell_type.as_str()));
        let key = (row.cell_type.clone(), row.sm_name.clone());
        assert!(!train_pairs.contains(&key), "{key:?} leaked into training");
        assert!(test_pairs.contains(&key), "{key:?} has no truth cells");
        // The compound was measured in the other cell types.
        assert!(train_pairs.contains(&("NK cells".to_string(), row.sm_name.clone())));
    }
    // B and Myeloid cells of some compounds and of the controls stay in training.
    for ct in ["B cells", "Myeloid cells"] {
        let measured: HashSet<&str> = train_pairs.iter().filter(|p| p.0 == ct).map(|p| p.1.as_str()).collect();
        assert!(measured.contains(DMSO) && POSITIVE_CONTROLS.iter().all(|c| measured.contains(c)));
        assert_eq!(measured.len(), 3 + 2 * config.measured_in_all_per_layout, "{ct}: {measured:?}");
    }
    let ids_in_both: HashSet<&String> = train.obs_id.iter().collect();
    assert!(test.obs_id.iter().all(|i| !ids_in_both.contains(i)));
}

#[test]
fn same_seed_same_bytes_whatever_the_thread_count() {
    let mut config = demo();
    config.n_train_cells = 2000;
    let (a, b) = (run(&config, 1), run(&config, 2));
    let files = [
        "adata_train.parquet", "adata_obs_meta.csv", "adata_excluded_ids.csv", "id_map.csv", "sample_submission.csv",
        "genes.txt", "simulation.json", "truth/adata_test.parquet", "truth/adata_test_obs_meta.csv", "truth/true_effects.parquet",
    ];
    for f in files {
        assert_eq!(std::fs::read(a.path().join(f)).unwrap(), std::fs::read(b.path().join(f)).unwrap(), "{f} differs");
    }
    config.seed += 1;
    let c = run(&config, 2);
    assert_ne!(std::fs::read(a.path().join("adata_train.parquet")).unwrap(), std::fs::read(c.path().join("adata_train.parquet")).unwrap());
}

#[test]
fn real_kaggle_layout_is_reproduced() {
    let dir = kaggle_layout_dir();
    let mut config = SimConfig::preset(Preset::Kaggle);
    config.layout_dir = Some(dir.clone());
    let layout = Layout::build(&config).unwrap();
    assert_eq!(layout.genes.len(), 18_211);
    assert_eq!(layout.compounds.iter().filter(|c| c.kind == CompoundKind::Regular).count(), 144);
    assert_eq!(layout.id_map, IdMap::read(&dir.join("id_map.csv")).unwrap());
    assert_eq!(layout.id_map.rows.len(), 255);
    for wells in &layout.wells {
        assert_eq!(wells.len(), 96);
        let kinds = |k: CompoundKind| wells.iter().filter(|w| layout.compounds[w.compound].kind == k).count();
        assert_eq!((kinds(CompoundKind::Regular), kinds(CompoundKind::PositiveControl), kinds(CompoundKind::NegativeControl)), (72, 16, 8));
    }
    // Every test compound sits at its real well, on the plates of its real layout.
    let mut reader = csv::Reader::from_path(dir.join("test_pair_wells_and_sizes.csv")).unwrap();
    for rec in reader.deserialize::<HashMap<String, String>>() {
        let rec = rec.unwrap();
        let plate = layout.plates.iter().find(|p| p.name == rec["plate_name"]).expect("real plate name");
        let k = layout.compound_index(&rec["sm_name"]).unwrap();
        let well = layout.wells[plate.layout].iter().find(|w| w.compound == k).expect("compound on its plate's layout");
        assert_eq!(well.name, rec["well"], "{}", rec["sm_name"]);
    }
    // B/Myeloid cells of the compounds in de_train stay in training; the id_map pairs do not.
    let b = layout.cell_types.iter().position(|c| c == "B cells").unwrap();
    let measured_b = (0..layout.compounds.len()).filter(|&k| !layout.is_withheld(b, k)).count();
    assert_eq!(measured_b, 17 + 1, "15 compounds + 2 positive controls from de_train, plus DMSO");

    // A small simulation on the real layout has the real genes and pairs.
    config.n_train_cells = 1500;
    let out = run(&config, 2);
    let o = ObsTable::read(&out.path().join("adata_obs_meta.csv")).unwrap();
    let plates: HashSet<&str> = o.plate_name.iter().collect();
    assert_eq!(plates.len(), 6);
    let genes = perturbgen::io::genes::read_gene_list(&out.path().join("genes.txt")).unwrap();
    assert_eq!(genes, perturbgen::io::genes::read_gene_list(&dir.join("genes.txt")).unwrap());
}
