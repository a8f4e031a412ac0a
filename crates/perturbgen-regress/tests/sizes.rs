//! The size forests (pgen-sizes): target groups from the plate layouts, R², recovery of known
//! group sizes.
use perturbgen::io::id_map::{IdMap, IdMapRow};
use perturbgen::io::sizes::{SizeRow, SizeTable};
use perturbgen::params::ParamGuard;
use perturbgen::pseudobulk::GroupKey;
use perturbgen_regress::sizes::{fit_sizes, r_squared, target_groups, SizesParams};
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
    let config = SizesParams { n_trees: 200, min_samples_leaf: 1, m_fraction: 1.0, validation_fraction: 0.25, ..Default::default() }.check().unwrap();
    let fit = fit_sizes(&table, &groups, &config, &|| {}).unwrap();
    assert_eq!(fit.predicted.rows.len(), 3);
    assert_eq!(fit.heldout_cells.len(), (0.25 * table.rows.len() as f64).round() as usize);
    // Scale is set by the well (A1 → 100 everywhere): the forests recover it for B cells.
    for r in &fit.predicted.rows {
        assert!((r.scale - 100.0).abs() < 15.0, "{r:?}");
        assert!(r.n_cells >= 5.0 && r.n_cells.fract() == 0.0, "{r:?}");
    }
    // Fewer cells on plate_2 (×0.7) than on plate_1 (×1.5), for the unseen pair too.
    let by_plate = |p: &str| fit.predicted.rows.iter().find(|r| r.key.plate_name == p).unwrap().n_cells;
    assert!(by_plate("plate_1") > by_plate("plate_2"));
    assert!(fit.r2_scale > 0.5 && fit.r2_cells > 0.5, "R² cells {} scale {}", fit.r2_cells, fit.r2_scale);
    let clipped = SizesParams { min_cells: 500, n_trees: 10, ..Default::default() }.check().unwrap();
    assert!(fit_sizes(&table, &groups, &clipped, &|| {}).unwrap().predicted.rows.iter().all(|r| r.n_cells == 500.0));
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
