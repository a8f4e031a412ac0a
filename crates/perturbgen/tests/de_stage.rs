//! Filter, split, pseudo-bulk and score on small hand-made fixtures with values computed by
//! hand.
use perturbgen::cells::Cells;
use perturbgen::filter::{filter_cells, FilterConfig};
use perturbgen::io::de_table::{DeRowKey, DeTable};
use perturbgen::io::id_map::{IdMap, IdMapRow};
use perturbgen::io::obs::{CellMeta, ObsTable};
use perturbgen::limma::signed_log_p;
use perturbgen::pseudobulk::PseudoBulk;
use perturbgen::score::{rmse, score};
use perturbgen::split::{split, TargetSpec};
use perturbgen::CountMatrix;
use std::path::Path;

/// Cells: (cell type, compound, plate, well, counts over 3 genes).
fn cells(spec: &[(&str, &str, &str, &str, [u32; 3])]) -> Cells {
    let mut obs = ObsTable::default();
    let mut m = CountMatrix::new(vec!["g1".into(), "g2".into(), "g3".into()]);
    for (i, (ct, sm, plate, well, counts)) in spec.iter().enumerate() {
        let id = format!("c{i}");
        obs.push(&CellMeta {
            obs_id: &id,
            library_id: "l",
            plate_name: plate,
            well,
            row: &well[..1],
            col: 1,
            cell_id: "PBMC",
            donor_id: if *plate == "p0" { "d0" } else { "d1" },
            cell_type: ct,
            sm_lincs_id: "L",
            sm_name: sm,
            smiles: "C",
            dose_um: 1.0,
            timepoint_hr: 24.0,
            control: *sm == "Dimethyl Sulfoxide" || *sm == "Dabrafenib",
        });
        let idx: Vec<u32> = (0..3).filter(|&g| counts[g as usize] > 0).collect();
        let dat: Vec<u32> = idx.iter().map(|&g| counts[g as usize]).collect();
        m.push_row(&idx, &dat);
    }
    Cells { obs, counts: m }
}

const DMSO: &str = "Dimethyl Sulfoxide";

fn fixture() -> Cells {
    cells(&[
        ("NK cells", DMSO, "p0", "A1", [1, 0, 2]),
        ("NK cells", DMSO, "p0", "A1", [3, 1, 0]),
        ("NK cells", "X", "p0", "A2", [0, 5, 0]),
        ("B cells", DMSO, "p0", "A1", [7, 0, 0]),
        ("B cells", "X", "p1", "B2", [1, 1, 1]),
        ("NK cells", "Dabrafenib", "p1", "B3", [9, 9, 9]),
        ("NK cells", "Y", "p1", "B4", [0, 0, 4]),
        ("B cells", "Y", "p1", "B4", [2, 0, 0]),
    ])
}

#[test]
fn pseudobulk_sums_cells_per_plate_well_cell_type() {
    let c = fixture();
    let pb = PseudoBulk::from_cells(&[(&c, Path::new("fixture"))]).unwrap();
    let got: Vec<(String, String, String, u64, Vec<f64>)> = (0..pb.n_samples())
        .map(|i| (pb.keys[i].cell_type.clone(), pb.keys[i].plate_name.clone(), pb.keys[i].well.clone(), pb.n_cells[i], pb.sample(i).to_vec()))
        .collect();
    let want = vec![
        ("B cells", "p0", "A1", 1, vec![7.0, 0.0, 0.0]),
        ("B cells", "p1", "B2", 1, vec![1.0, 1.0, 1.0]),
        ("B cells", "p1", "B4", 1, vec![2.0, 0.0, 0.0]),
        ("NK cells", "p0", "A1", 2, vec![4.0, 1.0, 2.0]),
        ("NK cells", "p0", "A2", 1, vec![0.0, 5.0, 0.0]),
        ("NK cells", "p1", "B3", 1, vec![9.0, 9.0, 9.0]),
        ("NK cells", "p1", "B4", 1, vec![0.0, 0.0, 4.0]),
    ];
    let want: Vec<(String, String, String, u64, Vec<f64>)> =
        want.into_iter().map(|(a, b, c, n, v)| (a.to_string(), b.to_string(), c.to_string(), n, v)).collect();
    assert_eq!(got, want);
    // Round trip through the parquet file.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("pb.parquet");
    pb.write(&p).unwrap();
    assert_eq!(PseudoBulk::read(&p).unwrap(), pb);
    // Pooling a second cell set adds to the same groups.
    let extra = cells(&[("NK cells", DMSO, "p0", "A1", [10, 0, 0])]);
    let pooled = PseudoBulk::from_cells(&[(&c, Path::new("a")), (&extra, Path::new("b"))]).unwrap();
    let i = pooled.keys.iter().position(|k| k.cell_type == "NK cells" && k.well == "A1").unwrap();
    assert_eq!((pooled.n_cells[i], pooled.sample(i).to_vec()), (3, vec![14.0, 1.0, 2.0]));
}

#[test]
fn pseudobulk_refuses_a_well_with_two_compounds_and_other_genes() {
    let c = cells(&[("NK cells", DMSO, "p0", "A1", [1, 0, 0]), ("NK cells", "X", "p0", "A1", [1, 0, 0])]);
    let e = PseudoBulk::from_cells(&[(&c, Path::new("cells.parquet"))]).unwrap_err().to_string();
    assert!(e.contains("cells.parquet") && e.contains("well A1") && e.contains("`X`"), "{e}");
    let mut other = fixture();
    other.counts.genes[1] = "gX".into();
    let e = PseudoBulk::from_cells(&[(&fixture(), Path::new("a")), (&other, Path::new("b.parquet"))]).unwrap_err().to_string();
    assert!(e.contains("b.parquet: gene order differs from the training cells at position 2: `gX` vs `g2`"), "{e}");
}

#[test]
fn filter_drops_positive_controls_and_rare_compounds() {
    let c = fixture();
    let config = |min_cells, drop: &[&str]| FilterConfig { min_cells, drop_compounds: drop.iter().map(|s| s.to_string()).collect(), ..Default::default() };
    let (keep, removed) = filter_cells(&c.obs, &config(2, &["Dabrafenib"])).unwrap();
    // X has 2 cells, Y 2, DMSO 3 (kept whatever min_cells), Dabrafenib dropped.
    assert_eq!(keep, vec![0, 1, 2, 3, 4, 6, 7]);
    assert_eq!(removed.len(), 1);
    assert_eq!((removed[0].sm_name.as_str(), removed[0].cells), ("Dabrafenib", 1));
    let (keep, removed) = filter_cells(&c.obs, &config(2, &["Dabrafenib", "Y"])).unwrap();
    assert_eq!(keep, vec![0, 1, 2, 3, 4]);
    assert_eq!(removed.iter().map(|r| r.sm_name.as_str()).collect::<Vec<_>>(), vec!["Dabrafenib", "Y"]);

    // What would silently leave nothing to train on, or not do what was asked, is refused.
    let err = |cfg| filter_cells(&c.obs, &cfg).unwrap_err().to_string();
    let e = err(config(3, &["Dabrafenib"]));
    assert!(e.starts_with("filter.min_cells: 3 drops every compound (the largest has 2 cells)"), "{e}");
    let e = err(config(0, &["Dabrafenib", "Belinostat"]));
    assert!(e.starts_with("filter.drop_compounds: `Belinostat` is not a compound of these cells"), "{e}");
    let e = err(config(0, &[DMSO]));
    assert!(e.starts_with("filter.drop_compounds: `Dimethyl Sulfoxide` is the negative control"), "{e}");
}

#[test]
fn split_holds_out_pairs_and_refuses_bad_targets() {
    let c = fixture();
    let spec = TargetSpec::Listed(vec![("NK cells".into(), "X".into())]);
    let s = split(&c.obs, &spec, DMSO, 0.0, false, 0).unwrap();
    assert_eq!(s.holdout_rows, vec![2]);
    assert_eq!(s.train_rows, vec![0, 1, 3, 4, 5, 6, 7]);
    assert_eq!(s.targets.rows, vec![IdMapRow { id: 0, cell_type: "NK cells".into(), sm_name: "X".into() }]);

    // Drawn: X and Y are the only compounds measured in both NK and B cells.
    let drawn = TargetSpec::Drawn { n_compounds: 2, cell_types: vec!["NK cells".into(), "B cells".into()], seed: 3 };
    let s = split(&c.obs, &drawn, DMSO, 0.0, false, 0).unwrap();
    assert_eq!(s.holdout_rows, vec![2, 4, 6, 7]);
    let too_many = TargetSpec::Drawn { n_compounds: 3, cell_types: vec!["NK cells".into()], seed: 3 };
    assert!(split(&c.obs, &too_many, DMSO, 0.0, false, 0).unwrap_err().to_string().contains("only 2 are measured"));
    let empty = TargetSpec::Drawn { n_compounds: 0, cell_types: vec!["NK cells".into()], seed: 3 };
    assert!(split(&c.obs, &empty, DMSO, 0.0, false, 0).unwrap_err().to_string().contains("hold-out is empty"));

    // id_map targets keep all cells; a target cell type without cells is refused.
    let ids = IdMap { rows: vec![IdMapRow { id: 5, cell_type: "B cells".into(), sm_name: "Y".into() }] };
    let s = split(&c.obs, &TargetSpec::IdMap(ids), DMSO, 0.0, false, 0).unwrap();
    assert_eq!(s.train_rows.len(), 8);
    assert!(s.holdout_rows.is_empty());
    let bad = IdMap { rows: vec![IdMapRow { id: 0, cell_type: "Platelets".into(), sm_name: "Y".into() }] };
    let e = split(&c.obs, &TargetSpec::IdMap(bad), DMSO, 0.0, false, 0).unwrap_err().to_string();
    assert!(e.contains("target cell type `Platelets` has no Dimethyl Sulfoxide cells"), "{e}");
    let e = split(&c.obs, &spec, "Water", 0.0, false, 0).unwrap_err().to_string();
    assert!(e.contains("no Water cells"), "{e}");
    let twice = TargetSpec::Listed(vec![("NK cells".into(), "X".into()), ("NK cells".into(), "X".into())]);
    let e = split(&c.obs, &twice, DMSO, 0.0, false, 0).unwrap_err().to_string();
    assert_eq!(e, "hold-out pair (NK cells, X) is listed twice");
}

#[test]
fn validation_fraction_and_target_relevant_cells() {
    // 2,000 cells of two types; targets touch cell type "B cells" and compound "X".
    let mut spec = Vec::new();
    for i in 0..2000 {
        let ct = if i % 2 == 0 { "NK cells" } else { "B cells" };
        let sm = [DMSO, "X", "Z"][i % 3];
        spec.push((ct, sm, "p0", "A1", [1, 0, 0]));
    }
    let many = cells(&spec);
    let ids = IdMap { rows: vec![IdMapRow { id: 0, cell_type: "B cells".into(), sm_name: "X".into() }] };
    let s = split(&many.obs, &TargetSpec::IdMap(ids.clone()), DMSO, 0.1, false, 7).unwrap();
    let share = s.validation_ids.len() as f64 / 2000.0;
    assert!((share - 0.1).abs() < 4.0 * (0.1f64 * 0.9 / 2000.0).sqrt(), "{share}");
    let kept = split(&many.obs, &TargetSpec::IdMap(ids), DMSO, 0.1, true, 7).unwrap();
    let index = many.obs.index(Path::new("x")).unwrap();
    for id in &kept.validation_ids {
        let i = index[id.as_str()] as usize;
        assert_eq!((many.obs.cell_type.get(i), many.obs.sm_name.get(i) == "X"), ("NK cells", false));
    }
    // Same draws: the kept set is the unflagged set minus the relevant cells.
    let relevant = |id: &String| {
        let i = index[id.as_str()] as usize;
        many.obs.cell_type.get(i) == "B cells" || many.obs.sm_name.get(i) == "X"
    };
    let expect: Vec<&String> = s.validation_ids.iter().filter(|id| !relevant(id)).collect();
    assert_eq!(kept.validation_ids.iter().collect::<Vec<_>>(), expect);
}

fn table(rows: &[(&str, &str)], genes: &[&str], values: &[f64]) -> DeTable {
    DeTable {
        keys: rows.iter().map(|(c, s)| DeRowKey { cell_type: c.to_string(), sm_name: s.to_string(), sm_lincs_id: String::new(), smiles: String::new(), control: false }).collect(),
        genes: genes.iter().map(|g| g.to_string()).collect(),
        values: values.to_vec(),
    }
}

#[test]
fn mrrmse_matches_hand_computation() {
    // Row 1: errors (1, -2, 2) → sqrt(9/3) = sqrt(3). Row 2: errors (0, 0, 3) → sqrt(3).
    // Row 3: errors (1, 1, 1) → 1. MRRMSE = (2·sqrt(3) + 1) / 3.
    let truth = table(&[("B", "a"), ("B", "b"), ("M", "a")], &["g1", "g2", "g3"], &[1.0, 0.0, 2.0, 5.0, 5.0, 5.0, 0.0, 0.0, 0.0]);
    // Prediction rows in another order, genes in another order (g3, g1, g2).
    let prediction = table(&[("M", "a"), ("B", "b"), ("B", "a")], &["g3", "g1", "g2"], &[1.0, 1.0, 1.0, 2.0, 5.0, 5.0, 0.0, 0.0, 2.0]);
    let s = score(&truth, &prediction, Path::new("t"), Path::new("p")).unwrap();
    let r3 = 3f64.sqrt();
    let row_rmse = |i: usize| s.rows[i].get(perturbgen::score::Metric::Mrrmse).unwrap();
    assert!((row_rmse(0) - r3).abs() < 1e-15 && (row_rmse(1) - r3).abs() < 1e-15 && (row_rmse(2) - 1.0).abs() < 1e-15);
    assert!((s.mrrmse - (2.0 * r3 + 1.0) / 3.0).abs() < 1e-15);
    assert_eq!(rmse(&[0.0, 0.0], &[3.0, 4.0]), (12.5f64).sqrt());

    let missing = table(&[("B", "a"), ("B", "b")], &["g1", "g2", "g3"], &[0.0; 6]);
    let e = score(&truth, &missing, Path::new("t"), Path::new("pred.parquet")).unwrap_err().to_string();
    assert!(e.contains("pred.parquet: no prediction for the truth pair (M, a)"), "{e}");
    let other_genes = table(&[("B", "a"), ("B", "b"), ("M", "a")], &["g1", "g2", "g4"], &[0.0; 9]);
    let e = score(&truth, &other_genes, Path::new("t"), Path::new("pred.parquet")).unwrap_err().to_string();
    assert!(e.contains("gene `g3` of the truth is missing"), "{e}");
    let extra = table(&[("B", "a"), ("B", "b"), ("M", "a"), ("M", "z")], &["g1", "g2", "g3"], &[0.0; 12]);
    let e = score(&truth, &extra, Path::new("t"), Path::new("pred.parquet")).unwrap_err().to_string();
    assert!(e.contains("pair (M, z) is not in the truth"), "{e}");
}

#[test]
fn signed_log_p_follows_the_official_formula() {
    assert_eq!(signed_log_p(2.0, 0.01), 2.0);
    assert_eq!(signed_log_p(-0.5, 1e-5), -5.0);
    assert_eq!(signed_log_p(1.0, 0.0), -f64::EPSILON.log10());
    assert_eq!(signed_log_p(0.0, 0.3), 0.0);
}

#[test]
fn replicate_runs_combine_by_mean_or_median_with_their_spread() {
    use perturbgen::blend::{combine_runs, replicate_curve, Combine, Input};

    let key = |sm: &str| DeRowKey { cell_type: "B cells".into(), sm_name: sm.into(), sm_lincs_id: String::new(), smiles: String::new(), control: false };
    // Three runs, two pairs × one gene; run 2 lists its rows in the other order.
    let run = |a: f64, b: f64, flip: bool| {
        let (keys, values) = if flip { (vec![key("y"), key("x")], vec![b, a]) } else { (vec![key("x"), key("y")], vec![a, b]) };
        DeTable { keys, genes: vec!["g".into()], values }
    };
    let runs = vec![
        Input { route: "r0".into(), table: run(1.0, 10.0, false), path: "r0".into() },
        Input { route: "r1".into(), table: run(2.0, 40.0, false), path: "r1".into() },
        Input { route: "r2".into(), table: run(6.0, 20.0, true), path: "r2".into() },
    ];
    assert_eq!(combine_runs(&runs, Combine::Mean).unwrap().values, vec![3.0, 70.0 / 3.0]);
    assert_eq!(combine_runs(&runs, Combine::Median).unwrap().values, vec![2.0, 20.0]);
    let truth = run(3.0, 20.0, false);
    let curve = replicate_curve(&runs, Combine::Mean, Some((&truth, Path::new("truth")))).unwrap();
    assert_eq!(curve.len(), 3);
    assert!(curve[0].run_sd.is_nan());
    // Two runs: SDs of (1, 2) and (10, 40) are 0.7071 and 21.213; their mean 10.960.
    assert!((curve[1].run_sd - (0.5f64.sqrt() + 450f64.sqrt()) / 2.0).abs() < 1e-9);
    assert!((curve[1].mean_se - curve[1].run_sd / 2f64.sqrt()).abs() < 1e-12);
    // Row RMSEs of the 3-run mean against the truth: 0 and |70/3 − 20|; MRRMSE their mean.
    assert!((curve[2].mrrmse.unwrap() - (70.0 / 3.0 - 20.0) / 2.0).abs() < 1e-9);
}
