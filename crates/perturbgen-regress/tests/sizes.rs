//! The size forests (pgen-sizes): target groups from the plate layouts, R², recovery of known
//! group sizes, in both modes (absolute; relative to the cell type's own control wells).
use perturbgen::io::id_map::{IdMap, IdMapRow};
use perturbgen::io::sizes::{SizeRow, SizeTable};
use perturbgen::params::ParamGuard;
use perturbgen::pseudobulk::GroupKey;
use perturbgen_regress::sizes::controls::ControlSizes;
use perturbgen_regress::sizes::{fit_sizes, r_squared, target_groups, SizeMode, SizesParams};
use std::path::Path;

fn key(ct: &str, sm: &str, plate: &str, well: &str) -> GroupKey {
    GroupKey {
        cell_type: ct.into(),
        plate_name: plate.into(),
        well: well.into(),
        donor_id: format!("donor_{}", &plate[plate.len() - 1..]),
        row: well[..1].into(),
        sm_name: sm.into(),
        sm_lincs_id: String::new(),
        smiles: String::new(),
        control: false,
    }
}

/// Known sizes: cells = cell-type base × plate factor; scale = 100 + 10 · well column.
fn measured() -> SizeTable {
    let cts = [("T cells", 60.0), ("NK cells", 30.0), ("B cells", 10.0)];
    let mut rows = Vec::new();
    for (p, plate_factor) in [("plate_0", 1.0), ("plate_1", 1.5), ("plate_2", 0.7)] {
        for (w, (well, sm)) in [("A1", "X"), ("A2", "Y"), ("A3", "Z"), ("B1", "W")].iter().enumerate() {
            for (ct, base) in cts {
                if ct == "B cells" && *sm == "X" {
                    continue; // the target pair (B cells, X) is not measured
                }
                rows.push(SizeRow { key: key(ct, sm, p, well), n_cells: base * plate_factor, scale: 100.0 + 10.0 * w as f64, observed: true });
            }
        }
    }
    SizeTable { rows }
}

#[test]
fn target_groups_are_every_well_of_the_compound_for_the_target_cell_type() {
    let targets = IdMap { rows: vec![IdMapRow { id: 0, cell_type: "B cells".into(), sm_name: "X".into() }] };
    let groups = target_groups(&measured(), &targets, Path::new("targets.csv")).unwrap();
    let wells: Vec<(&str, &str, &str)> = groups.iter().map(|k| (k.cell_type.as_str(), k.plate_name.as_str(), k.well.as_str())).collect();
    assert_eq!(wells, vec![("B cells", "plate_0", "A1"), ("B cells", "plate_1", "A1"), ("B cells", "plate_2", "A1")]);
    assert!(groups.iter().all(|k| k.sm_name == "X" && k.donor_id == format!("donor_{}", &k.plate_name[6..])));

    let never = IdMap { rows: vec![IdMapRow { id: 0, cell_type: "B cells".into(), sm_name: "Q".into() }] };
    let e = target_groups(&measured(), &never, Path::new("targets.csv")).unwrap_err().to_string();
    assert!(e.starts_with("targets.csv: row 1: compound `Q` (cell type B cells) was never applied in a plate layout"), "{e}");
}

#[test]
fn size_forests_recover_known_sizes_and_clip() {
    let targets = IdMap { rows: vec![IdMapRow { id: 0, cell_type: "B cells".into(), sm_name: "X".into() }] };
    let table = measured();
    let groups = target_groups(&table, &targets, Path::new("t")).unwrap();
    let config = SizesParams { n_trees: 200, min_samples_leaf: 1, m_fraction: 1.0, validation_fraction: 0.25, relative_to_controls: false, ..Default::default() }.check().unwrap();
    let fit = fit_sizes(&table, None, &groups, &config, &|| {}).unwrap();
    assert_eq!(fit.predicted.rows.len(), 3);
    assert_eq!(fit.mode, SizeMode::Absolute);
    assert_eq!(fit.checks.len(), 1, "no control wells given: only the absolute mode is checked");
    assert_eq!(fit.heldout.len(), (0.25 * table.rows.len() as f64).round() as usize);
    assert_eq!(fit.checks[0].cells.len(), fit.heldout.len());
    // Scale is set by the well (A1 → 100 everywhere): the forests recover it for B cells.
    for r in &fit.predicted.rows {
        assert!((r.scale - 100.0).abs() < 15.0, "{r:?}");
        assert!(r.n_cells >= 5.0 && r.n_cells.fract() == 0.0, "{r:?}");
    }
    // Fewer cells on plate_2 (×0.7) than on plate_1 (×1.5), for the unseen pair too.
    let by_plate = |p: &str| fit.predicted.rows.iter().find(|r| r.key.plate_name == p).unwrap().n_cells;
    assert!(by_plate("plate_1") > by_plate("plate_2"));
    let check = fit.check().unwrap();
    assert!(check.r2_scale > 0.5 && check.r2_cells > 0.5, "R² cells {} scale {}", check.r2_cells, check.r2_scale);
    let clipped = SizesParams { min_cells: 500, n_trees: 10, relative_to_controls: false, ..Default::default() }.check().unwrap();
    assert!(fit_sizes(&table, None, &groups, &clipped, &|| {}).unwrap().predicted.rows.iter().all(|r| r.n_cells == 500.0));
    // The relative mode cannot run without the control wells: the error names the key.
    let relative = SizesParams { n_trees: 10, relative_to_controls: true, ..Default::default() }.check().unwrap();
    let e = fit_sizes(&table, None, &groups, &relative, &|| {}).unwrap_err().to_string();
    assert!(e.starts_with("sizes.relative_to_controls"), "{e}");
}

/// A study's shape: T and NK cells treated with X, Y, Z on three plates; B cells measured only
/// under control (DMSO), with controls 3× the others' (cells and scale). Every compound scales
/// both sizes by the same factor in every cell type (X 1.2, Y 0.8, Z 1.0) and the plates by
/// 1, 1.5, 0.7 (cells) — so B cells treated with X on plate p have, by hand,
/// 3 · 20 · plate factor · 1.2 cells and a scale of 3 · 100 · 1.2 = 360.
fn study() -> (SizeTable, SizeTable) {
    let plates = [("plate_0", 1.0), ("plate_1", 1.5), ("plate_2", 0.7)];
    let (mut treated, mut controls) = (Vec::new(), Vec::new());
    for (p, plate_factor) in plates {
        for (ct, times) in [("T cells", 1.0), ("NK cells", 1.0), ("B cells", 3.0)] {
            let base = |sm: &str, well: &str, ratio: f64| SizeRow { key: key(ct, sm, p, well), n_cells: times * 20.0 * plate_factor * ratio, scale: times * 100.0 * ratio, observed: true };
            controls.push(base("DMSO", "H12", 1.0));
            if ct != "B cells" {
                for (sm, well, ratio) in [("X", "A1", 1.2), ("Y", "A2", 0.8), ("Z", "A3", 1.0)] {
                    treated.push(base(sm, well, ratio));
                }
            }
        }
    }
    (SizeTable { rows: treated }, SizeTable { rows: controls })
}

#[test]
fn relative_mode_gives_a_cell_type_its_own_control_size_times_the_compounds_effect() {
    let (treated, controls) = study();
    let controls = ControlSizes::new(&controls, "DMSO");
    let targets = IdMap { rows: vec![IdMapRow { id: 0, cell_type: "B cells".into(), sm_name: "X".into() }] };
    let groups = target_groups(&treated, &targets, Path::new("t")).unwrap();
    let params = SizesParams { n_trees: 50, min_samples_leaf: 1, m_fraction: 1.0, min_cells: 1, validation_fraction: 0.0, ..Default::default() };
    let relative = fit_sizes(&treated, Some(&controls), &groups, &params.clone().check().unwrap(), &|| {}).unwrap();
    assert_eq!(relative.mode, SizeMode::RelativeToControls, "the default mode");
    let absolute = fit_sizes(&treated, Some(&controls), &groups, &SizesParams { relative_to_controls: false, ..params }.check().unwrap(), &|| {}).unwrap();
    for (rel, abs) in relative.predicted.rows.iter().zip(&absolute.predicted.rows) {
        let plate_factor = match rel.key.plate_name.as_str() {
            "plate_0" => 1.0,
            "plate_1" => 1.5,
            _ => 0.7,
        };
        assert!((rel.scale - 360.0).abs() < 0.01 * 360.0, "relative: B cells' own controls (300) × X's 1.2: {rel:?}");
        let cells: f64 = 3.0 * 20.0 * plate_factor * 1.2;
        assert!((rel.n_cells - cells.round()).abs() <= 1.0, "relative: {cells} cells by hand: {rel:?}");
        // The absolute mode knows no B cells level: it gives the treated cell types' size (X: 120).
        assert!(abs.scale < 150.0, "absolute: {abs:?}");
    }
    assert!(relative.baselines.iter().all(|b| (b.scale - 300.0).abs() < 1e-9));
}

#[test]
fn both_modes_are_checked_on_the_same_held_out_groups() {
    let (treated, controls) = study();
    let controls = ControlSizes::new(&controls, "DMSO");
    let targets = IdMap { rows: vec![IdMapRow { id: 0, cell_type: "B cells".into(), sm_name: "X".into() }] };
    let groups = target_groups(&treated, &targets, Path::new("t")).unwrap();
    let config = SizesParams { n_trees: 50, validation_fraction: 0.3, ..Default::default() }.check().unwrap();
    let fit = fit_sizes(&treated, Some(&controls), &groups, &config, &|| {}).unwrap();
    assert_eq!(fit.heldout.len(), (0.3f64 * 18.0).round() as usize);
    let modes: Vec<SizeMode> = fit.checks.iter().map(|c| c.mode).collect();
    assert_eq!(modes, vec![SizeMode::Absolute, SizeMode::RelativeToControls]);
    let observed = |c: &perturbgen_regress::sizes::HeldOutCheck| c.scale.iter().map(|p| p.0).collect::<Vec<_>>();
    assert_eq!(observed(&fit.checks[0]), observed(&fit.checks[1]));
    let by_hand: Vec<f64> = fit.heldout.iter().map(|k| treated.rows.iter().find(|r| r.key == *k).unwrap().scale).collect();
    assert_eq!(observed(&fit.checks[0]), by_hand);
    // Every held-out group's ratio is its compound's, seen in the other cell type: the
    // relative mode predicts the scale almost exactly.
    assert!(fit.checks[1].r2_scale > 0.95, "{:?}", fit.checks[1]);
    // Same inputs, same predictions (bit for bit).
    let again = fit_sizes(&treated, Some(&controls), &groups, &config, &|| {}).unwrap();
    assert_eq!(again.predicted, fit.predicted);
    // A target cell type without control wells is refused in the relative mode, naming it.
    let e = ControlSizes::new(&SizeTable::default(), "DMSO").require_for(&targets, Path::new("targets.csv"), "DMSO").unwrap_err().to_string();
    assert!(e.starts_with("targets.csv: row 1: cell type `B cells` has no `DMSO` (negative-control) cells"), "{e}");
}

#[test]
fn r_squared_by_hand() {
    // Observed 1, 2, 3 (mean 2, SS_tot 2); predicted 1, 2, 4 (SS_res 1): R² = 0.5.
    assert!((r_squared(&[(1.0, 1.0), (2.0, 2.0), (3.0, 4.0)]) - 0.5).abs() < 1e-12);
    assert!(r_squared(&[(1.0, 1.0)]).is_nan());
}

#[test]
fn bad_sizes_parameters_name_their_key() {
    for (p, key) in [
        (SizesParams { n_trees: 0, ..Default::default() }, "sizes.n_trees"),
        (SizesParams { min_cells: 0, ..Default::default() }, "sizes.min_cells"),
        (SizesParams { validation_fraction: 0.95, ..Default::default() }, "sizes.validation_fraction"),
    ] {
        let e = p.check().unwrap_err().to_string();
        assert!(e.starts_with(key), "{e}");
    }
}
