//! pgen-forest's library side (forests → predicted pseudo-bulk) on hand-built pseudo-bulks with
//! known additive log-scale effects. The limma half runs in R and is tested end to end by
//! tests/python/test_forest.py.
use perturbgen::io::id_map::{IdMap, IdMapRow};
use perturbgen::pseudobulk::{GroupKey, PseudoBulk};
use perturbgen::params::ParamGuard;
use perturbgen_regress::forest::{pca, predict_pseudobulk, FeatureColumn, ForestConfig, ForestParams, ForestTarget};
use std::path::Path;

const CELL_TYPES: [&str; 4] = ["A", "B", "C", "D"];
const COMPOUNDS: [&str; 5] = ["DMSO", "c1", "c2", "c3", "c4"];
const N_GENES: usize = 24;

/// Known log-scale effects: gene g's log-mean = base(g) + cell_type(ct, g) + compound(cp, g).
fn base(g: usize) -> f64 {
    3.0 + (g % 5) as f64 * 0.4
}
fn ct_effect(ct: usize, g: usize) -> f64 {
    // Each cell type lifts or lowers its own genes among 16..23 (not the compounds' genes: a
    // forest's prediction is an average of training values, so it cannot add a cell-type and a
    // compound effect on the same gene beyond what any training sample showed).
    if g < 16 {
        0.0
    } else if (g - 16) % CELL_TYPES.len() == ct {
        1.0
    } else if (g - 15) % CELL_TYPES.len() == ct {
        -0.8
    } else {
        0.0
    }
}
fn cp_effect(cp: usize, g: usize) -> f64 {
    // DMSO: none; compound k acts on genes 4(k−1) .. 4(k−1)+3 with ±1.5.
    if cp == 0 || g / 4 != cp - 1 {
        return 0.0;
    }
    if g % 2 == 0 { 1.5 } else { -1.5 }
}

/// 2 donors × 2 plates each; on every plate DMSO in 3 wells and each compound in 1 well (its
/// row fixed per plate); every cell type in every well. Counts = library share · exp(log-mean)
/// times a deterministic ±5 % wobble.
fn fixture() -> PseudoBulk {
    let genes: Vec<String> = (0..N_GENES).map(|g| format!("G{g}")).collect();
    let mut pb = PseudoBulk { genes, ..Default::default() };
    let mut wobble = 0u64;
    for plate in 0..4 {
        let donor = plate / 2;
        let mut wells: Vec<(usize, String, String)> = (0..3).map(|w| (0, format!("{}{}", ["A", "B", "C"][w], 1), ["A", "B", "C"][w].to_string())).collect();
        for cp in 1..COMPOUNDS.len() {
            let row = ["D", "E", "F", "G"][(cp + plate) % 4];
            wells.push((cp, format!("{row}{}", cp + 1), row.to_string()));
        }
        for (ct, ct_name) in CELL_TYPES.iter().enumerate() {
            for (cp, well, row) in &wells {
                let lib = 40_000.0 * (1.0 + 0.3 * ct as f64) * (1.0 + 0.1 * plate as f64);
                let means: Vec<f64> = (0..N_GENES).map(|g| (base(g) + ct_effect(ct, g) + cp_effect(*cp, g)).exp()).collect();
                let total: f64 = means.iter().sum();
                for m in means {
                    wobble = wobble.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let w = 1.0 + 0.1 * ((wobble >> 33) as f64 / (1u64 << 31) as f64 - 0.5);
                    pb.counts.push((lib * m / total * w).round());
                }
                pb.keys.push(GroupKey {
                    cell_type: ct_name.to_string(),
                    plate_name: format!("plate_{plate}"),
                    well: well.clone(),
                    donor_id: format!("donor_{donor}"),
                    row: row.clone(),
                    sm_name: COMPOUNDS[*cp].to_string(),
                    sm_lincs_id: format!("L{cp}"),
                    smiles: format!("S{cp}"),
                    control: *cp == 0,
                });
                pb.n_cells.push(20 + 5 * ct as u64);
            }
        }
    }
    pb
}

fn ids(pairs: &[(&str, &str)]) -> IdMap {
    IdMap { rows: pairs.iter().enumerate().map(|(i, p)| IdMapRow { id: i as i64, cell_type: p.0.into(), sm_name: p.1.into() }).collect() }
}

fn params(target: ForestTarget, components: usize) -> ForestParams {
    ForestParams { n_trees: 60, target, components, ..Default::default() }
}

fn run(pb: &PseudoBulk, targets: &IdMap, p: &ForestParams) -> perturbgen_regress::Result<perturbgen_regress::forest::ForestPrediction> {
    let config: ForestConfig = p.clone().check()?;
    predict_pseudobulk(pb, targets, &config, Some("DMSO"), Path::new("train.parquet"), Path::new("targets.csv"), &|| {})
}

/// The true log-CPM of (cell type, compound) without the wobble.
fn true_log_cpm(ct: usize, cp: usize) -> Vec<f64> {
    let means: Vec<f64> = (0..N_GENES).map(|g| (base(g) + ct_effect(ct, g) + cp_effect(cp, g)).exp()).collect();
    let total: f64 = means.iter().sum();
    means.iter().map(|m| (m / total * 1e6).ln_1p()).collect()
}

/// Mean log-CPM of cell type `ct`'s DMSO samples in the training fixture.
fn dmso_log_cpm(pb: &PseudoBulk, ct: &str) -> Vec<f64> {
    let rows: Vec<usize> = (0..pb.n_samples()).filter(|&i| pb.keys[i].cell_type == ct && pb.keys[i].sm_name == "DMSO").collect();
    (0..N_GENES)
        .map(|g| {
            rows.iter()
                .map(|&i| {
                    let lib: f64 = pb.sample(i).iter().sum();
                    (pb.sample(i)[g] / lib * 1e6).ln_1p()
                })
                .sum::<f64>()
                / rows.len() as f64
        })
        .collect()
}

#[test]
fn forests_recover_a_known_compound_effect_in_an_unseen_cell_type() {
    let pb = fixture();
    // (C, c3) and (D, c1) are held out: the forests never see them.
    let targets = ids(&[("C", "c3"), ("D", "c1")]);
    for (target, components) in [(ForestTarget::Genes, 10), (ForestTarget::Pca, 10)] {
        let out = run(&pb, &targets, &params(target, components)).unwrap();
        // One predicted sample per well of the compound (4 plates), per target.
        assert_eq!(out.predicted.n_samples(), 8);
        assert_eq!(out.train.n_samples(), pb.n_samples() - 8);
        assert!(out.predicted.keys[..4].iter().all(|k| k.cell_type == "C" && k.sm_name == "c3"));
        assert!(out.predicted.counts.iter().all(|v| v.is_finite() && *v >= 0.0));
        for (t, (ct, cti, cp)) in [(0usize, ("C", 2usize, 3usize)), (1, ("D", 3, 1))] {
            let dmso = dmso_log_cpm(&pb, ct);
            let rows = t * 4..(t + 1) * 4;
            let pred: Vec<f64> = (0..N_GENES).map(|g| rows.clone().map(|i| out.log_cpm[i * N_GENES + g]).sum::<f64>() / 4.0).collect();
            // Predicted log-CPM shift vs the cell type's DMSO samples, against the true shift
            // (the compound effect, plus the CPM renormalisation it causes on the other genes).
            let shift: Vec<f64> = (0..N_GENES).map(|g| pred[g] - dmso[g]).collect();
            let (t_cp, t_dmso) = (true_log_cpm(cti, cp), true_log_cpm(cti, 0));
            let truth: Vec<f64> = (0..N_GENES).map(|g| t_cp[g] - t_dmso[g]).collect();
            let affected: Vec<usize> = (0..N_GENES).filter(|&g| cp_effect(cp, g) != 0.0).collect();
            // Tolerance: every affected gene moves in the true direction by at least a third of
            // the true shift and at most 1.5×; the others stay within 0.4 of their true shift
            // per gene, 0.9 with PCA (measured: a component mixes compound and cell-type
            // loadings, so predicting its score drags cell-type genes along by up to −0.77 —
            // the reason `genes` is the default).
            let other_tol = if target == ForestTarget::Genes { 0.4 } else { 0.9 };
            for &g in &affected {
                let ratio = shift[g] / truth[g];
                assert!((0.33..1.5).contains(&ratio), "{target:?} ({ct}, c{cp}) gene {g}: shift {:.3} vs true {:.3}", shift[g], truth[g]);
            }
            for g in (0..N_GENES).filter(|g| !affected.contains(g)) {
                assert!((shift[g] - truth[g]).abs() < other_tol, "{target:?} ({ct}, c{cp}) unaffected gene {g}: shift {:.3} vs true {:.3}", shift[g], truth[g]);
            }
        }
    }
}

#[test]
fn pca_reconstructs_a_low_rank_matrix() {
    // Rank-2 centred matrix: 2 components reproduce it.
    let (n, g) = (12, 30);
    let y: Vec<f64> = (0..n * g)
        .map(|ij| {
            let (i, j) = (ij / g, ij % g);
            (i as f64 - 5.5) * (j as f64 * 0.1).sin() + ((i * 7 % 5) as f64 - 2.0) * (j as f64 * 0.3).cos()
        })
        .collect();
    let (scores, loadings) = pca(&y, n, g, 2, 0);
    for i in 0..n {
        for j in 0..g {
            let r: f64 = (0..2).map(|c| scores[i * 2 + c] * loadings[j * 2 + c]).sum();
            assert!((r - y[i * g + j]).abs() < 1e-8, "({i}, {j}): {r} vs {}", y[i * g + j]);
        }
    }
}

#[test]
fn same_bytes_for_one_and_two_threads() {
    let pb = fixture();
    let targets = ids(&[("C", "c3"), ("D", "c1")]);
    let dir = tempfile::tempdir().unwrap();
    for (name, target) in [("genes", ForestTarget::Genes), ("pca", ForestTarget::Pca)] {
        // 25 trees: shards of 10, 10 and 5, weighted by their tree counts.
        let p = ForestParams { n_trees: 25, ..params(target, 8) };
        let mut files = Vec::new();
        for threads in [1, 2] {
            let out = perturbgen::threads::with_threads(threads, || run(&pb, &targets, &p)).unwrap().unwrap();
            let path = dir.path().join(format!("{name}_{threads}.parquet"));
            out.predicted.write(&path).unwrap();
            files.push(std::fs::read(&path).unwrap());
        }
        assert_eq!(files[0], files[1], "{name}");
        // A different seed gives a different forest.
        let other = run(&pb, &targets, &ForestParams { seed: 1, ..p.clone() }).unwrap();
        let first = run(&pb, &targets, &p).unwrap();
        assert_ne!(other.predicted.counts, first.predicted.counts, "{name}");
    }
}

#[test]
fn bad_inputs_are_one_line_errors() {
    let pb = fixture();
    let p = params(ForestTarget::Genes, 10);
    let err = |pb: &PseudoBulk, t: &IdMap, p: &ForestParams| run(pb, t, p).unwrap_err().to_string();

    // A compound never measured in a training well.
    let e = err(&pb, &ids(&[("C", "zz")]), &p);
    assert!(e.contains("targets.csv") && e.contains("row 1") && e.contains("`zz`") && e.contains("never measured"), "{e}");
    // A compound measured only in the target pairs themselves (all its wells are targets).
    let all_c2: Vec<(&str, &str)> = CELL_TYPES.iter().map(|c| (*c, "c2")).collect();
    let e = err(&pb, &ids(&all_c2), &p);
    assert!(e.contains("`c2`") && e.contains("never measured"), "{e}");
    // A cell type without training samples.
    let e = err(&pb, &ids(&[("C", "c3"), ("Z", "c1")]), &p);
    assert!(e.contains("row 2") && e.contains("cell type `Z`") && e.contains("no training samples"), "{e}");
    // A cell type without negative-control samples.
    let mut no_dmso = pb.clone();
    let keep: Vec<usize> = (0..pb.n_samples()).filter(|&i| !(pb.keys[i].cell_type == "D" && pb.keys[i].sm_name == "DMSO")).collect();
    no_dmso.keys = keep.iter().map(|&i| pb.keys[i].clone()).collect();
    no_dmso.n_cells = keep.iter().map(|&i| pb.n_cells[i]).collect();
    no_dmso.counts = keep.iter().flat_map(|&i| pb.sample(i).to_vec()).collect();
    let e = err(&no_dmso, &ids(&[("D", "c1")]), &p);
    assert!(e.contains("cell type `D`") && e.contains("negative-control") && e.contains("DMSO"), "{e}");
    // An empty pseudo-bulk.
    let empty = PseudoBulk { genes: pb.genes.clone(), ..Default::default() };
    let e = err(&empty, &ids(&[("C", "c3")]), &p);
    assert!(e.contains("train.parquet") && e.contains("no samples"), "{e}");
    // A feature column given twice (an unknown one does not deserialise: see pgen-config's tests).
    let e = err(&pb, &ids(&[("C", "c3")]), &ForestParams { features: vec![FeatureColumn::CellType, FeatureColumn::CellType], ..p.clone() });
    assert!(e.contains("forest.features") && e.contains("`cell_type` given twice"), "{e}");
    // A negative count: file, row and column named.
    let mut neg = pb.clone();
    neg.counts[2 * N_GENES + 5] = -1.0;
    let e = err(&neg, &ids(&[("C", "c3")]), &p);
    assert!(e.contains("train.parquet") && e.contains("row 3, column `G5`"), "{e}");
    // Parameters out of range.
    let e = err(&pb, &ids(&[("C", "c3")]), &ForestParams { n_trees: 0, ..p.clone() });
    assert!(e.contains("forest.n_trees"), "{e}");
    let e = err(&pb, &ids(&[("C", "c3")]), &ForestParams { m_fraction: 1.5, ..p.clone() });
    assert!(e.contains("forest.m_fraction"), "{e}");
    for e in [err(&pb, &ids(&[("C", "zz")]), &p), err(&empty, &ids(&[("C", "c3")]), &p)] {
        assert!(!e.contains('\n'), "{e}");
    }
}
