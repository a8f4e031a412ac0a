//! Readers and writers of the Kaggle layout: round trips, accepted encodings, and refusals of
//! bad input with one-line errors naming file, row/column and what was expected.
use arrow_array::{ArrayRef, DictionaryArray, Float32Array, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow_array::types::Int32Type;
use perturbgen::io::counts::{read_long_counts, write_long_counts, CountType, GeneOrder, GENES_KEY};
use perturbgen::io::de_table::{DeRowKey, DeTable};
use perturbgen::io::excluded::ExcludedIds;
use perturbgen::io::id_map::{IdMap, IdMapRow};
use perturbgen::io::obs::{CellMeta, ObsTable};
use perturbgen::io::parquet_util::write_batch;
use perturbgen::{CountMatrix, Error};
use std::path::Path;
use std::sync::Arc;

fn genes(n: usize) -> Vec<String> {
    (0..n).map(|g| format!("G{g}")).collect()
}

fn obs(n: usize) -> ObsTable {
    let mut o = ObsTable::default();
    for i in 0..n {
        let id = format!("cell{i:03}");
        let well = format!("A{}", i % 12 + 1);
        o.push(&CellMeta {
            obs_id: &id,
            library_id: "library_0",
            plate_name: if i % 2 == 0 { "plate_0" } else { "plate_1" },
            well: &well,
            row: "A",
            col: (i % 12 + 1) as i64,
            cell_id: "PBMC",
            donor_id: "donor_0",
            cell_type: ["B cells", "NK cells", "T cells CD4+"][i % 3],
            sm_lincs_id: "LSM-1",
            sm_name: if i % 4 == 0 { "Dimethyl Sulfoxide" } else { "Drug, \"quoted\"" },
            smiles: "CS(C)=O",
            dose_um: 1.0,
            timepoint_hr: 24.0,
            control: i % 4 == 0,
        });
    }
    o
}

/// A small matrix with a known pattern (some empty rows).
fn matrix(n_cells: usize, n_genes: usize) -> CountMatrix {
    let mut m = CountMatrix::new(genes(n_genes));
    for i in 0..n_cells {
        let idx: Vec<u32> = (0..n_genes as u32).filter(|g| (i as u32 * 7 + g * 3) % 5 == 0).collect();
        let dat: Vec<u32> = idx.iter().map(|g| 1 + (g * 13 + i as u32) % 400).collect();
        if i % 6 == 5 {
            m.push_row(&[], &[]);
        } else {
            m.push_row(&idx, &dat);
        }
    }
    m
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn long_counts_round_trip_both_layouts() {
    let dir = tmp();
    let (m, o) = (matrix(30, 50), obs(30));
    for ty in [CountType::Int32, CountType::KaggleFloat] {
        let p = dir.path().join(format!("{ty:?}.parquet"));
        write_long_counts(&p, &m, &o.obs_id, ty).unwrap();
        let back = read_long_counts(&p, &o, GeneOrder::FromFile, None).unwrap();
        assert_eq!(back, m, "{ty:?}");
        // Explicit gene list gives the same matrix.
        let g = genes(50);
        assert_eq!(read_long_counts(&p, &o, GeneOrder::Given(&g), None).unwrap(), m);
        assert!(perturbgen::io::counts::file_metadata(&p, GENES_KEY).unwrap().unwrap().contains("\"G49\""));
    }
}

/// Files from other tools: plain strings, any integer or float count type, rows in any order,
/// an extra column; without gene metadata the genes are sorted by name.
#[test]
fn long_counts_accept_other_encodings_and_orders() {
    let dir = tmp();
    let o = obs(3);
    let rows = [("cell002", "b", 4.0), ("cell000", "c", 1.0), ("cell002", "a", 2.0), ("cell000", "a", 7.0), ("cell001", "c", 0.0)];
    let ids: ArrayRef = Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0)));
    let gs: ArrayRef = Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1)));
    let extra: ArrayRef = Arc::new(Float64Array::from(vec![0.5; 5]));
    let counts: Vec<(&str, ArrayRef)> = vec![
        ("f64", Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.2)))),
        ("f32", Arc::new(Float32Array::from_iter_values(rows.iter().map(|r| r.2 as f32)))),
        ("i64", Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2 as i64)))),
        ("i32", Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.2 as i32)))),
    ];
    for (name, count) in counts {
        let batch = RecordBatch::try_from_iter(vec![("normalized_count", extra.clone()), ("obs_id", ids.clone()), ("gene", gs.clone()), ("count", count)]).unwrap();
        let p = dir.path().join(format!("{name}.parquet"));
        write_batch(&p, &batch, vec![]).unwrap();
        let m = read_long_counts(&p, &o, GeneOrder::FromFile, None).unwrap();
        assert_eq!(m.genes, vec!["a", "b", "c"], "{name}");
        assert_eq!(m.dense_row(0), vec![7, 0, 1], "{name}");
        assert_eq!(m.dense_row(1), vec![0, 0, 0], "{name}: explicit zero dropped");
        assert_eq!(m.dense_row(2), vec![2, 4, 0], "{name}");
    }
}

#[test]
fn excluded_pairs_are_dropped_on_read() {
    let dir = tmp();
    let (m, o) = (matrix(12, 20), obs(12));
    let p = dir.path().join("c.parquet");
    write_long_counts(&p, &m, &o.obs_id, CountType::KaggleFloat).unwrap();
    let (i0, _) = m.row(0);
    let (i3, _) = m.row(3);
    let excluded = ExcludedIds {
        pairs: vec![
            ("cell000".into(), format!("G{}", i0[0])),
            ("cell003".into(), format!("G{}", i3[1])),
            ("not-a-cell".into(), "G1".into()),
        ],
    };
    let ep = dir.path().join("ex.csv");
    excluded.write(&ep).unwrap();
    let back = read_long_counts(&p, &o, GeneOrder::FromFile, Some(&ExcludedIds::read(&ep).unwrap())).unwrap();
    assert_eq!(back.nnz(), m.nnz() - 2);
    let mut expect0 = m.dense_row(0);
    expect0[i0[0] as usize] = 0;
    assert_eq!(back.dense_row(0), expect0);
    let mut expect3 = m.dense_row(3);
    expect3[i3[1] as usize] = 0;
    assert_eq!(back.dense_row(3), expect3);
    for i in [1, 2, 4, 11] {
        assert_eq!(back.dense_row(i), m.dense_row(i));
    }
}

#[test]
fn obs_round_trips_through_csv_and_parquet() {
    let dir = tmp();
    let o = obs(25);
    let (c, p) = (dir.path().join("obs.csv"), dir.path().join("obs.parquet"));
    o.write_csv(&c).unwrap();
    o.write_parquet(&p).unwrap();
    assert_eq!(ObsTable::read(&c).unwrap(), o);
    let from_parquet = ObsTable::read(&p).unwrap();
    for i in 0..25 {
        assert_eq!(from_parquet.cell(i), o.cell(i));
    }
    let header = std::fs::read_to_string(&c).unwrap().lines().next().unwrap().to_string();
    assert_eq!(header, perturbgen::io::obs::OBS_COLUMNS.join(","));
}

#[test]
fn de_table_id_map_genes_and_submission_round_trip() {
    let dir = tmp();
    let g = genes(7);
    let keys: Vec<DeRowKey> = (0..4)
        .map(|i| DeRowKey { cell_type: format!("T{i}"), sm_name: format!("D{i}"), sm_lincs_id: format!("L{i}"), smiles: "C".into(), control: i == 3 })
        .collect();
    let t = DeTable { keys, genes: g.clone(), values: (0..28).map(|v| v as f64 * -0.37 + 1e-300).collect() };
    let p = dir.path().join("de.parquet");
    t.write(&p).unwrap();
    assert_eq!(DeTable::read(&p).unwrap(), t);
    assert_eq!(perturbgen::io::genes::read_gene_list(&p).unwrap(), g);

    let ids = IdMap { rows: (0..4).map(|i| IdMapRow { id: i, cell_type: format!("T{i}"), sm_name: format!("D, {i}") }).collect() };
    let ip = dir.path().join("id_map.csv");
    ids.write(&ip).unwrap();
    assert_eq!(IdMap::read(&ip).unwrap(), ids);

    let gp = dir.path().join("genes.txt");
    perturbgen::io::genes::write_gene_list(&gp, &g).unwrap();
    assert_eq!(perturbgen::io::genes::read_gene_list(&gp).unwrap(), g);

    let sp = dir.path().join("sub.csv");
    perturbgen::io::submission::write_submission(&sp, &ids, &g, &t.values).unwrap();
    let mut r = csv::Reader::from_path(&sp).unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header[0], "id");
    assert_eq!(&header[1..], &g[..]);
    for (i, rec) in r.records().enumerate() {
        let rec = rec.unwrap();
        assert_eq!(rec[0].parse::<i64>().unwrap(), i as i64);
        let vals: Vec<f64> = rec.iter().skip(1).map(|v| v.parse().unwrap()).collect();
        assert_eq!(vals, t.row(i), "exact round trip of floats");
    }
}

// ---- refusals ---------------------------------------------------------------------------

fn write_counts(dir: &Path, name: &str, ids: Vec<&str>, gs: Vec<&str>, counts: ArrayRef) -> std::path::PathBuf {
    let batch = RecordBatch::try_from_iter(vec![
        ("obs_id", Arc::new(StringArray::from(ids)) as ArrayRef),
        ("gene", Arc::new(StringArray::from(gs)) as ArrayRef),
        ("count", counts),
    ])
    .unwrap();
    let p = dir.join(name);
    write_batch(&p, &batch, vec![]).unwrap();
    p
}

fn err_text(e: Error) -> String {
    let s = e.to_string();
    assert!(!s.contains('\n'), "one line: {s}");
    s
}

#[test]
fn bad_counts_are_refused_with_row_and_column() {
    let dir = tmp();
    let o = obs(3);
    let g = vec!["a".to_string(), "b".to_string()];
    #[allow(clippy::type_complexity)]
    let cases: Vec<(&str, Vec<&str>, Vec<&str>, ArrayRef, &str)> = vec![
        ("neg.parquet", vec!["cell000", "cell001"], vec!["a", "b"], Arc::new(Float64Array::from(vec![1.0, -2.0])), "row 2, column `count`: expected a whole non-negative count below 2^31 (the pipeline stores int32 counts), found -2"),
        ("frac.parquet", vec!["cell000", "cell001"], vec!["a", "b"], Arc::new(Float64Array::from(vec![1.5, 2.0])), "row 1, column `count`: expected a whole non-negative count below 2^31 (the pipeline stores int32 counts), found 1.5"),
        ("nan.parquet", vec!["cell000", "cell001", "cell002"], vec!["a", "b", "a"], Arc::new(Float64Array::from(vec![1.0, 2.0, f64::NAN])), "row 3, column `count`: expected a whole non-negative count below 2^31 (the pipeline stores int32 counts), found NaN"),
        ("null.parquet", vec!["cell000", "cell001"], vec!["a", "b"], Arc::new(Float64Array::from(vec![Some(1.0), None])), "row 2, column `count`: expected a whole non-negative count below 2^31 (the pipeline stores int32 counts), found null"),
        // Issue 23: a count in [2^31, 2^32) used to wrap to a negative int32 in ingest's cache.
        ("big.parquet", vec!["cell000", "cell001"], vec!["a", "b"], Arc::new(Int64Array::from(vec![1, 3_000_000_000])), "row 2, column `count`: expected a whole non-negative count below 2^31 (the pipeline stores int32 counts), found 3000000000"),
        ("cell.parquet", vec!["cell000", "ghost"], vec!["a", "b"], Arc::new(Int32Array::from(vec![1, 2])), "row 2, column `obs_id`: expected an obs_id listed in the obs metadata, found `ghost`"),
        ("gene.parquet", vec!["cell000", "cell001"], vec!["a", "zz"], Arc::new(Int32Array::from(vec![1, 2])), "row 2, column `gene`: expected a gene in the gene list, found `zz`"),
        ("text.parquet", vec!["cell000"], vec!["a"], Arc::new(StringArray::from(vec!["1"])), "column `count` has type Utf8, expected a numeric type"),
    ];
    for (name, ids, gs, counts, want) in cases {
        let p = write_counts(dir.path(), name, ids, gs, counts);
        let e = err_text(read_long_counts(&p, &o, GeneOrder::Given(&g), None).unwrap_err());
        assert!(e.contains(name) && e.contains(want), "{name}: got `{e}`");
    }
    // A gene listed twice for one cell.
    let p = write_counts(dir.path(), "dup.parquet", vec!["cell000", "cell000"], vec!["b", "b"], Arc::new(Int32Array::from(vec![1, 2])));
    let e = err_text(read_long_counts(&p, &o, GeneOrder::Given(&g), None).unwrap_err());
    assert!(e.contains("cell `cell000` lists gene `b` more than once"), "{e}");
}

#[test]
fn missing_columns_and_broken_files_are_refused() {
    let dir = tmp();
    let o = obs(3);
    let batch = RecordBatch::try_from_iter(vec![
        ("obs_id", Arc::new(StringArray::from(vec!["cell000"])) as ArrayRef),
        ("counts", Arc::new(Int32Array::from(vec![1])) as ArrayRef),
    ])
    .unwrap();
    let p = dir.path().join("cols.parquet");
    write_batch(&p, &batch, vec![]).unwrap();
    let e = err_text(read_long_counts(&p, &o, GeneOrder::FromFile, None).unwrap_err());
    assert!(e.contains("cols.parquet: missing required column `gene`"), "{e}");

    // Truncated: a valid file cut short; corrupt: not parquet at all.
    let good = dir.path().join("good.parquet");
    write_long_counts(&good, &matrix(3, 10), &o.obs_id, CountType::Int32).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let cut = dir.path().join("cut.parquet");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = err_text(read_long_counts(&cut, &o, GeneOrder::FromFile, None).unwrap_err());
    assert!(e.contains("cut.parquet: not a readable Parquet file"), "{e}");
    let junk = dir.path().join("junk.parquet");
    std::fs::write(&junk, b"obs_id,gene,count\ncell000,a,1\n").unwrap();
    let e = err_text(read_long_counts(&junk, &o, GeneOrder::FromFile, None).unwrap_err());
    assert!(e.contains("junk.parquet: not a readable Parquet file"), "{e}");
    let e = err_text(read_long_counts(&dir.path().join("absent.parquet"), &o, GeneOrder::FromFile, None).unwrap_err());
    assert!(e.contains("absent.parquet") && e.contains("No such file"), "{e}");
}

#[test]
fn bad_obs_tables_are_refused() {
    let dir = tmp();
    let header = perturbgen::io::obs::OBS_COLUMNS.join(",");
    let good_row = "c1,library_0,plate_0,A1,A,1,PBMC,donor_0,B cells,LSM-1,Drug,C,1.0,24.0,False";
    let cases = [
        ("missing.csv", header.replace(",donor_id", ""), good_row.replace(",donor_0", ""), "missing required column `donor_id`"),
        ("dose.csv", header.clone(), good_row.replace("1.0,24.0", "high,24.0"), "row 1, column `dose_uM`: expected a number or an empty field, found `high`"),
        ("control.csv", header.clone(), good_row.replace("False", "maybe"), "row 1, column `control`: expected True or False, found `maybe`"),
        ("col.csv", header.clone(), good_row.replace("A,1,PBMC", "A,1.5,PBMC"), "row 1, column `col`: expected a whole number, found `1.5`"),
        ("short.csv", header.clone(), "c1,library_0".to_string(), "line 2: expected 15 fields, found 2"),
        ("empty_ct.csv", header.clone(), good_row.replace("B cells", ""), "row 1, column `cell_type`: expected a value (the column is required), found an empty field"),
    ];
    for (name, h, row, want) in cases {
        let p = dir.path().join(name);
        std::fs::write(&p, format!("{h}\n{row}\n")).unwrap();
        let e = err_text(ObsTable::read(&p).unwrap_err());
        assert!(e.contains(name) && e.contains(want), "{name}: got `{e}`");
    }
    let p = dir.path().join("dup.csv");
    std::fs::write(&p, format!("{header}\n{good_row}\n{good_row}\n")).unwrap();
    let e = err_text(ObsTable::read(&p).unwrap_err());
    assert!(e.contains("row 2, column `obs_id`: expected unique cell ids, found `c1` again"), "{e}");
}

#[test]
fn study_obs_needs_only_the_used_columns() {
    use perturbgen::io::obs::{ColumnMap, NO_ROW};
    let dir = tmp();
    // A study's own names, no row/col/dose/control columns, an empty unused field.
    let p = dir.path().join("study.csv");
    std::fs::write(&p, "barcode,celltype,condition,donor,batch,well,note\nAAAC-1,CD14+ Monocytes,ctrl,d1,p1,B07,\nAAAG-1,B cells,IFN-beta,d2,p2,stim,x\n").unwrap();
    let map = ColumnMap::parse(&["obs_id=barcode".into(), "cell_type=celltype".into(), "sm_name=condition".into(), "donor_id=donor".into(), "plate_name=batch".into()]).unwrap();
    let o = ObsTable::read_with(&p, &map).unwrap();
    assert_eq!(o.obs_id, vec!["AAAC-1", "AAAG-1"]);
    assert_eq!((o.cell_type.get(0), o.sm_name.get(1), o.donor_id.get(1), o.plate_name.get(0)), ("CD14+ Monocytes", "IFN-beta", "d2", "p1"));
    // row and col from the well name where it is a plate well; library_id = the plate.
    assert_eq!((o.row.get(0), o.col[0], o.row.get(1), o.col[1]), ("B", 7, NO_ROW, 0));
    assert_eq!(o.library_id.get(1), "p2");
    assert!(o.dose_um[0].is_nan() && o.timepoint_hr[1].is_nan() && !o.control[0]);
    // A required column missing, and a mapped column missing: both named.
    let e = err_text(ObsTable::read(&p).unwrap_err());
    assert!(e.contains("study.csv") && e.contains("missing required column `obs_id`") && e.contains("input.columns"), "{e}");
    let bad = ColumnMap::parse(&["obs_id=barcode".into(), "cell_type=CellType".into(), "sm_name=condition".into(), "donor_id=donor".into(), "plate_name=batch".into()]).unwrap();
    let e = err_text(ObsTable::read_with(&p, &bad).unwrap_err());
    assert!(e.contains("missing required column `CellType`") && e.contains("maps `cell_type`"), "{e}");
    assert!(ColumnMap::parse(&["celltype=x".into()]).is_err());
    assert!(ColumnMap::parse(&["cell_type".into()]).is_err());
}

#[test]
fn study_without_plates_and_wells_gets_one_sample_per_donor_and_condition() {
    use perturbgen::io::obs::{ColumnMap, NO_ROW};
    let dir = tmp();
    let p = dir.path().join("study.csv");
    // Only the cell id, cell type, condition and donor; a condition named like a plate well.
    std::fs::write(&p, "barcode,celltype,condition,donor\nc1,B cells,ctrl,d1\nc2,NK cells,B07,d2\n").unwrap();
    let map = ColumnMap::parse(&["obs_id=barcode".into(), "cell_type=celltype".into(), "sm_name=condition".into(), "donor_id=donor".into()]).unwrap();
    let o = ObsTable::read_with(&p, &map).unwrap();
    assert_eq!((o.plate_name.get(0), o.plate_name.get(1)), ("d1", "d2"));
    assert_eq!((o.well.get(0), o.well.get(1)), ("ctrl", "B07"));
    // A well named after its condition has no plate row or column; library_id is the plate.
    assert_eq!((o.row.get(1), o.col[1], o.library_id.get(1)), (NO_ROW, 0, "d2"));
    // The donor has no default: missing, it is named.
    std::fs::write(&p, "barcode,celltype,condition\nc1,B cells,ctrl\n").unwrap();
    let map = ColumnMap::parse(&["obs_id=barcode".into(), "cell_type=celltype".into(), "sm_name=condition".into()]).unwrap();
    let e = err_text(ObsTable::read_with(&p, &map).unwrap_err());
    assert!(e.contains("missing required column `donor_id`"), "{e}");
    // A well column that is there must have values.
    std::fs::write(&p, "barcode,celltype,condition,donor,well\nc1,B cells,ctrl,d1,\n").unwrap();
    let map = ColumnMap::parse(&["obs_id=barcode".into(), "cell_type=celltype".into(), "sm_name=condition".into(), "donor_id=donor".into()]).unwrap();
    let e = err_text(ObsTable::read_with(&p, &map).unwrap_err());
    assert!(e.contains("row 1, column `well`"), "{e}");
}

#[test]
fn de_table_refuses_nan_and_missing_keys() {
    let dir = tmp();
    let t = DeTable {
        keys: vec![DeRowKey { cell_type: "T".into(), sm_name: "D".into(), sm_lincs_id: "L".into(), smiles: "C".into(), control: false }],
        genes: genes(3),
        values: vec![0.1, f64::NAN, 0.3],
    };
    let p = dir.path().join("de.parquet");
    t.write(&p).unwrap();
    let e = err_text(DeTable::read(&p).unwrap_err());
    assert!(e.contains("de.parquet: row 1, column `G1`: expected a finite number, found NaN"), "{e}");
    let batch = RecordBatch::try_from_iter(vec![("cell_type", Arc::new(StringArray::from(vec!["T"])) as ArrayRef), ("G0", Arc::new(Float64Array::from(vec![1.0])) as ArrayRef)]).unwrap();
    let p = dir.path().join("keys.parquet");
    write_batch(&p, &batch, vec![]).unwrap();
    let e = err_text(DeTable::read(&p).unwrap_err());
    assert!(e.contains("missing required column `sm_name`"), "{e}");
}

#[test]
fn dictionary_encoded_strings_read_like_plain_ones() {
    let dir = tmp();
    let o = obs(2);
    let ids = DictionaryArray::<Int32Type>::try_new(Int32Array::from(vec![1, 0, 1]), Arc::new(StringArray::from(vec!["cell000", "cell001"]))).unwrap();
    let gs = DictionaryArray::<Int32Type>::try_new(Int32Array::from(vec![0, 0, 1]), Arc::new(StringArray::from(vec!["x", "y"]))).unwrap();
    let batch = RecordBatch::try_from_iter(vec![
        ("obs_id", Arc::new(ids) as ArrayRef),
        ("gene", Arc::new(gs) as ArrayRef),
        ("count", Arc::new(Int64Array::from(vec![5, 6, 7])) as ArrayRef),
    ])
    .unwrap();
    let p = dir.path().join("dict.parquet");
    write_batch(&p, &batch, vec![]).unwrap();
    let m = read_long_counts(&p, &o, GeneOrder::FromFile, None).unwrap();
    assert_eq!(m.dense_row(0), vec![6, 0]);
    assert_eq!(m.dense_row(1), vec![5, 7]);
}
