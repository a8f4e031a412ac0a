//! Regression routes, blends and the leaderboard on small hand-made tables.
use perturbgen::io::de_table::{DeRowKey, DeTable};
use perturbgen::io::id_map::{IdMap, IdMapRow};
use perturbgen::blend::{blend, check_weights, fit_weights, inner_holdout, Input};
use perturbgen::leaderboard::{choose, collect, read_overall};
use perturbgen::params::ParamGuard;
use perturbgen_regress::features::{Design, Extra};
use perturbgen_regress::xgb::{predict, ParamValue, TreeMethod, XgbParams};
use perturbgen_regress::xgboost;
use std::path::{Path, PathBuf};

fn key(ct: &str, cp: &str) -> DeRowKey {
    DeRowKey { cell_type: ct.into(), sm_name: cp.into(), sm_lincs_id: format!("L-{cp}"), smiles: format!("S-{cp}"), control: false }
}

fn table(rows: &[(&str, &str, Vec<f64>)], genes: &[&str]) -> DeTable {
    DeTable {
        keys: rows.iter().map(|r| key(r.0, r.1)).collect(),
        genes: genes.iter().map(|g| g.to_string()).collect(),
        values: rows.iter().flat_map(|r| r.2.clone()).collect(),
    }
}

fn ids(pairs: &[(&str, &str)]) -> IdMap {
    IdMap { rows: pairs.iter().enumerate().map(|(i, p)| IdMapRow { id: i as i64, cell_type: p.0.into(), sm_name: p.1.into() }).collect() }
}

fn p(s: &str) -> PathBuf {
    PathBuf::from(s)
}

/// NK and T measured with compounds a, b, c; B with a only. Gene value = compound effect + cell offset.
fn fixture() -> DeTable {
    let eff = |cp: &str| match cp {
        "a" => 1.0,
        "b" => -2.0,
        _ => 3.0,
    };
    let off = |ct: &str| match ct {
        "NK" => 0.0,
        "T" => 0.5,
        _ => -0.5,
    };
    let mut rows = Vec::new();
    for ct in ["NK", "T"] {
        for cp in ["a", "b", "c"] {
            rows.push((ct, cp, vec![eff(cp) + off(ct), 2.0 * eff(cp)]));
        }
    }
    rows.push(("B", "a", vec![eff("a") + off("B"), 2.0 * eff("a")]));
    table(&rows, &["g1", "g2"])
}

#[test]
fn links_xgboost_1_6_2() {
    assert_eq!(xgboost::version(), (1, 6, 2));
}

#[test]
fn design_one_hot_and_leave_one_out_means() {
    let de = fixture();
    let targets = vec![("B".to_string(), "b".to_string()), ("B".to_string(), "c".to_string())];
    let d = Design::new(&de, &targets, &[Extra::CompoundMean, Extra::CellTypeMean], &p("de"), &p("t")).unwrap();
    assert_eq!(d.cell_types, ["B", "NK", "T"]);
    assert_eq!(d.compounds, ["a", "b", "c"]);
    assert_eq!(d.feature_names(), ["cell_type=B", "cell_type=NK", "cell_type=T", "sm_name=a", "sm_name=b", "sm_name=c", "compound_mean", "cell_type_mean"]);
    let mut x = Vec::new();
    d.matrix_for_gene(&de, 0, false, &mut x);
    // (B, b): one-hot B and b; compound_mean of b over NK, T = (-2 + -1.5) / 2; B's other compounds: a = 0.5.
    assert_eq!(&x[..8], &[1., 0., 0., 0., 1., 0., -1.75, 0.5]);
    d.matrix_for_gene(&de, 1, true, &mut x);
    // Training row 0 = (NK, a), gene 2: compound a elsewhere (T: 2, B: 2) = 2; NK's others (b, c) = (-4 + 6) / 2.
    assert_eq!(&x[..8], &[0., 1., 0., 1., 0., 0., 2.0, 1.0]);
    // (B, a): cell type B has no other compound -> missing (NaN).
    let last = &x[6 * 8..7 * 8];
    assert!(last[7].is_nan() && last[6] == 2.0, "{last:?}");
}

#[test]
fn single_gene_fit_recovers_a_step() {
    // y = 3 where x0 = 1, else -1; 200 rounds at eta 0.3 converge to the step.
    let x: Vec<f32> = (0..20).flat_map(|i| [(i % 2) as f32, (i % 5) as f32]).collect();
    let y: Vec<f32> = (0..20).map(|i| if i % 2 == 1 { 3.0 } else { -1.0 }).collect();
    let params = XgbParams { rounds: 200, ..Default::default() }.check().unwrap().booster_params();
    let pred = xgboost::fit_predict(&x, &y, 2, &[1.0, 0.0, 0.0, 4.0], &params, 200).unwrap();
    assert!((pred[0] - 3.0).abs() < 1e-3 && (pred[1] + 1.0).abs() < 1e-3, "{pred:?}");
}

#[test]
fn xgb_predicts_targets_in_id_map_order_with_de_train_metadata() {
    let de = fixture();
    let targets = ids(&[("B", "c"), ("B", "b")]);
    let params = XgbParams { rounds: 50, min_child_weight: 0.0, features: vec![Extra::CompoundMean], ..Default::default() }.check().unwrap();
    let out = predict(&de, &targets, &params, &p("de"), &p("t"), &|| {}).unwrap();
    assert_eq!(out.genes, de.genes);
    assert_eq!(out.keys, vec![key("B", "c"), key("B", "b")]);
    // g2 = 2 · compound effect whatever the cell type: c → 6, b → −4.
    assert!((out.row(0)[1] - 6.0).abs() < 0.05 && (out.row(1)[1] + 4.0).abs() < 0.05, "{:?}", out.values);
    // Same result with more threads.
    let again = perturbgen::threads::with_threads(2, || predict(&de, &targets, &params, &p("de"), &p("t"), &|| {})).unwrap().unwrap();
    assert_eq!(out, again);
}

#[test]
fn xgb_bad_inputs_are_one_line_errors() {
    let de = fixture();
    let params = XgbParams { rounds: 2, ..Default::default() }.check().unwrap();
    let run = |de: &DeTable, t: &IdMap| predict(de, t, &params, Path::new("de_train.parquet"), Path::new("targets.csv"), &|| {}).unwrap_err().to_string();

    let e = run(&de, &ids(&[("B", "zz")]));
    assert!(e.contains("targets.csv") && e.contains("`zz`") && e.contains("no features"), "{e}");
    let e = run(&DeTable { genes: de.genes.clone(), ..Default::default() }, &ids(&[("B", "b")]));
    assert!(e.contains("de_train.parquet") && e.contains("no rows"), "{e}");
    let mut nan = de.clone();
    nan.values[5] = f64::NAN;
    let e = run(&nan, &ids(&[("B", "b")]));
    assert!(e.contains("row 3, column `g2`") && e.contains("NaN"), "{e}");
    let mut dup = de.clone();
    dup.keys[1] = dup.keys[0].clone();
    let e = run(&dup, &ids(&[("B", "b")]));
    assert!(e.contains("row 2") && e.contains("appears twice"), "{e}");
    let e = run(&de, &IdMap::default());
    assert!(e.contains("no target pairs"), "{e}");

    let bad = XgbParams { params: [("booster".to_string(), ParamValue::Text("magic".into()))].into(), rounds: 1, ..Default::default() }.check().unwrap();
    let e = predict(&de, &ids(&[("B", "b")]), &bad, &p("de"), &p("t"), &|| {}).unwrap_err().to_string();
    assert!(e.contains("XGBoost") && e.contains("booster=magic") && !e.contains('\n'), "{e}");
    let key_of = |p: XgbParams| match p.check() {
        Err(perturbgen::Error::Param { key, .. }) => key,
        other => panic!("expected a parameter error, got {other:?}"),
    };
    assert_eq!(key_of(XgbParams { subsample: 1.5, ..Default::default() }), "xgb.subsample");
    assert_eq!(key_of(XgbParams { rounds: 0, ..Default::default() }), "xgb.rounds");
    assert_eq!(key_of(XgbParams { eta: f64::NAN, ..Default::default() }), "xgb.eta");
    assert_eq!(key_of(XgbParams { features: vec![Extra::CellTypeMean, Extra::CellTypeMean], ..Default::default() }), "xgb.features");
    // Free-form parameters must be XGBoost's, not a typed key's or the thread count.
    let free = |name: &str| XgbParams { params: [(name.to_string(), ParamValue::Number(0.5))].into(), ..Default::default() };
    for (name, why) in [("etaa", "not an XGBoost 1.6 parameter"), ("learning_rate", "set `xgb.eta` instead"), ("nthread", "threads come from --threads")] {
        let e = free(name).check().unwrap_err().to_string();
        assert!(e.starts_with(&format!("xgb.params.{name}: {why}")), "{e}");
    }
    // They reach XGBoost as text, set last.
    let p = XgbParams { tree_method: TreeMethod::Hist, params: [("max_bin".to_string(), ParamValue::Integer(64)), ("max_delta_step".to_string(), ParamValue::Number(0.5))].into(), ..Default::default() };
    let booster = p.check().unwrap().booster_params();
    assert!(booster.contains(&("tree_method".to_string(), "hist".to_string())));
    assert_eq!(&booster[booster.len() - 2..], &[("max_bin".to_string(), "64".to_string()), ("max_delta_step".to_string(), "0.5".to_string())]);
}

fn input(route: &str, t: DeTable) -> Input {
    Input { route: route.into(), table: t, path: PathBuf::from(format!("{route}.parquet")) }
}

#[test]
fn blend_with_given_weights_aligns_rows_and_genes() {
    let a = table(&[("B", "x", vec![1.0, 2.0]), ("B", "y", vec![3.0, 4.0])], &["g1", "g2"]);
    // Same pairs and genes in another order.
    let b = table(&[("B", "y", vec![40.0, 30.0]), ("B", "x", vec![20.0, 10.0])], &["g2", "g1"]);
    let out = blend(&[input("a", a.clone()), input("b", b)], &[0.75, 0.25]).unwrap();
    assert_eq!(out.keys, a.keys);
    assert_eq!(out.values, vec![0.75 + 2.5, 1.5 + 5.0, 2.25 + 7.5, 3.0 + 10.0]);
    assert!(check_weights(&[0.5, 0.6], 2).is_err());
    assert!(check_weights(&[-0.5, 1.5], 2).is_err());
    assert!(check_weights(&[1.0], 2).is_err());
    let other = table(&[("B", "z", vec![1.0, 2.0]), ("B", "y", vec![3.0, 4.0])], &["g1", "g2"]);
    let e = blend(&[input("a", a), input("c", other)], &[0.5, 0.5]).unwrap_err().to_string();
    assert!(e.contains("c.parquet") && e.contains("(B, x)"), "{e}");
}

#[test]
fn fitted_weights_recover_a_known_mix() {
    // truth = 0.3 · a + 0.7 · b exactly: the MRRMSE-optimal weights are (0.3, 0.7, 0), value 0.
    let g = ["g1", "g2", "g3"];
    let a = table(&[("B", "x", vec![1.0, -2.0, 0.5]), ("M", "x", vec![0.0, 1.0, 2.0])], &g);
    let b = table(&[("B", "x", vec![-1.0, 0.0, 3.0]), ("M", "x", vec![2.0, 2.0, -1.0])], &g);
    let z = table(&[("B", "x", vec![0.0; 3]), ("M", "x", vec![0.0; 3])], &g);
    let truth = DeTable { values: a.values.iter().zip(&b.values).map(|(x, y)| 0.3 * x + 0.7 * y).collect(), ..a.clone() };
    let (w, f) = fit_weights(&truth, &[input("a", a), input("b", b), input("zero", z)], &p("truth")).unwrap();
    assert!((w[0] - 0.3).abs() < 1e-4 && (w[1] - 0.7).abs() < 1e-4 && w[2].abs() < 1e-4, "{w:?}");
    assert!(f < 1e-4, "{f}");
    assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-9);
}

#[test]
fn fitted_weights_prefer_the_single_best_route_when_mixing_does_not_help() {
    let g = ["g1", "g2"];
    let truth = table(&[("B", "x", vec![1.0, 1.0])], &g);
    let good = table(&[("B", "x", vec![1.0, 1.0])], &g);
    let bad = table(&[("B", "x", vec![5.0, -3.0])], &g);
    let (w, f) = fit_weights(&truth, &[input("bad", bad), input("good", good)], &p("truth")).unwrap();
    assert_eq!(w, vec![0.0, 1.0]);
    assert_eq!(f, 0.0);
}

#[test]
fn inner_holdout_draws_pairs_known_elsewhere_and_is_seeded() {
    let de = fixture();
    let (train, targets, truth) = inner_holdout(&de, &["NK".to_string()], 2, 0, &p("de")).unwrap();
    assert_eq!(truth.n_rows(), 2);
    assert_eq!(train.n_rows() + truth.n_rows(), de.n_rows());
    assert!(truth.keys.iter().all(|k| k.cell_type == "NK"));
    // Every held-out compound is still measured in the inner training table.
    assert!(truth.keys.iter().all(|k| train.keys.iter().any(|t| t.sm_name == k.sm_name)));
    assert_eq!(targets.rows.len(), 2);
    for (i, k) in truth.keys.iter().enumerate() {
        let j = de.keys.iter().position(|d| d == k).unwrap();
        assert_eq!(truth.row(i), de.row(j));
    }
    let again = inner_holdout(&de, &["NK".to_string()], 2, 0, &p("de")).unwrap();
    assert_eq!(again.2, truth);
    // B has one measured compound: it keeps it... unless it is all there is; then one pair is
    // still drawn.
    let (_, _, t) = inner_holdout(&de, &["B".to_string()], 5, 0, &p("de")).unwrap();
    assert_eq!(t.n_rows(), 1);
    // A cell type without any training row (measured only under the control) has nothing to
    // hold out: the pairs come from every cell type of the table instead, and each held
    // compound stays measured in the inner training table.
    let (train, _, t) = inner_holdout(&de, &["Myeloid".to_string()], 1, 0, &p("de")).unwrap();
    assert!(t.n_rows() >= 1 && t.keys.iter().all(|k| k.cell_type != "Myeloid"));
    assert!(t.keys.iter().all(|k| train.keys.iter().any(|r| r.sm_name == k.sm_name)));
}

#[test]
fn leaderboard_ranks_routes_and_chooses() {
    use perturbgen::leaderboard::{toward_ceiling, Kind};
    use perturbgen::score::Metric;
    let dir = tempfile::tempdir().unwrap();
    // A pgen-score table's header with every metric column; the ALL row's RMSE and Pearson set.
    let header = format!("cell_type,sm_name,clip,{}", Metric::ALL.map(Metric::row_name).join(","));
    let write = |name: &str, rmse: &str, pearson: &str| {
        let path = dir.path().join(name);
        let rest = vec![""; Metric::ALL.len() - 3].join(",");
        std::fs::write(&path, format!("{header}\nB,x,none,1.0,0.5,0.1,{rest}\nALL,MEAN,4.0,{rmse},0.5,{pearson},{rest}\n")).unwrap();
        path
    };
    let tables = vec![
        ("zero".to_string(), Kind::Baseline, write("zero.csv", "0.9", "0.0")),
        ("xgb".to_string(), Kind::Route, write("xgb.csv", "0.62", "0.3")),
        ("blend".to_string(), Kind::Route, write("b.csv", "0.7", "0.4")),
        ("ceiling".to_string(), Kind::Reference, write("c.csv", "0.5", "0.9")),
    ];
    let entries = collect(&tables, Metric::Mrrmse).unwrap();
    let order: Vec<&str> = entries.iter().map(|e| e.route.as_str()).collect();
    assert_eq!(order, ["ceiling", "xgb", "blend", "zero"]);
    assert_eq!(entries[1].clip, "4.0");
    assert_eq!(entries[1].get(Metric::Spearman), None, "an empty field is undefined");
    // Pearson: higher is better.
    let by_pearson: Vec<String> = collect(&tables, Metric::Pearson).unwrap().into_iter().map(|e| e.route).collect();
    assert_eq!(by_pearson, ["ceiling", "blend", "xgb", "zero"]);
    // xgb's MRRMSE 0.62 is (0.9 − 0.62) / (0.9 − 0.5) = 0.7 of the way from zero to the ceiling.
    assert!((toward_ceiling(&entries, Metric::Mrrmse, Some(0.62)).unwrap() - 0.7).abs() < 1e-12);
    // On Pearson the ceiling (0.9) beats zero (0.0) too; on a metric where it does not, no scale.
    assert!((toward_ceiling(&entries, Metric::Pearson, Some(0.45)).unwrap() - 0.5).abs() < 1e-12);
    assert_eq!(toward_ceiling(&entries, Metric::Mae, Some(0.5)), None, "ceiling and zero tie on MAE");
    let routes: Vec<String> = tables.iter().filter(|t| t.1 != Kind::Reference).map(|t| t.0.clone()).collect();
    assert_eq!(choose(None, &routes, &entries).unwrap(), "xgb", "a reference is never chosen");
    assert_eq!(choose(Some("zero"), &routes, &entries).unwrap(), "zero");
    assert!(choose(Some("dgd"), &routes, &entries).unwrap_err().to_string().contains("dgd"));
    assert!(choose(None, &routes, &[]).is_err());
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, format!("{header}\n")).unwrap();
    assert!(read_overall(&bad).unwrap_err().to_string().contains("no ALL row"));
    let old = dir.path().join("old.csv");
    std::fs::write(&old, "cell_type,sm_name,rmse\nALL,MRRMSE,1.0\n").unwrap();
    assert!(read_overall(&old).unwrap_err().to_string().contains("no column `clip`"));
    let dup = vec![tables[0].clone(), tables[0].clone()];
    assert!(collect(&dup, Metric::Mrrmse).is_err());
}
