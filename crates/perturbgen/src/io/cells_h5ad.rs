//! Cells as AnnData (generated cells, for scanpy): X = the counts as a CSR matrix (float32),
//! obs = cell_type, sm_name, donor_id, plate_name, well (categoricals) and the caller's extra
//! columns, obs_names = the cells' obs_id, var = the genes.
use crate::cells::Cells;
use crate::error::Result;
use crate::io::h5ad::{CountsAnnData, ObsColumn, UnsValue};
use std::path::Path;

/// The obs columns every cells .h5ad has, in this order.
pub const CELL_OBS_COLUMNS: [&str; 5] = ["cell_type", "sm_name", "donor_id", "plate_name", "well"];

/// Writes `cells` to `path` (all or nothing), `extra` obs columns after [`CELL_OBS_COLUMNS`].
pub fn write_cells_h5ad(cells: &Cells, extra: Vec<(String, ObsColumn)>, uns: Vec<(String, UnsValue)>, path: &Path) -> Result<()> {
    let o = &cells.obs;
    let col = |c: &crate::categorical::Categorical| ObsColumn::Categorical(c.iter().map(str::to_string).collect());
    let mut obs = vec![
        ("cell_type".to_string(), col(&o.cell_type)),
        ("sm_name".to_string(), col(&o.sm_name)),
        ("donor_id".to_string(), col(&o.donor_id)),
        ("plate_name".to_string(), col(&o.plate_name)),
        ("well".to_string(), col(&o.well)),
    ];
    obs.extend(extra);
    CountsAnnData { obs_names: o.obs_id.clone(), obs, counts: &cells.counts, uns }.write(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counts::CountMatrix;
    use crate::io::h5ad::{read_h5ad, CountSource};
    use crate::io::counts::GeneOrder;
    use crate::io::obs::{CellMeta, ObsTable};

    #[test]
    fn counts_and_obs_read_back() {
        let mut cells = Cells { obs: ObsTable::default(), counts: CountMatrix::new(vec!["G1".into(), "G2".into(), "G3".into()]) };
        for (i, (ct, row)) in [("B cells", (vec![0u32, 2], vec![3u32, 16_777_216])), ("NK cells", (vec![], vec![]))].into_iter().enumerate() {
            cells.counts.push_row(&row.0, &row.1);
            let id = format!("c{i}");
            cells.obs.push(&CellMeta {
                obs_id: &id, library_id: "l", plate_name: "p1", well: "A1", row: "A", col: 1, cell_id: &id, donor_id: "d1",
                cell_type: ct, sm_lincs_id: "x", sm_name: "Drug", smiles: "", dose_um: 1.0, timepoint_hr: 24.0, control: false,
            });
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cells.h5ad");
        write_cells_h5ad(&cells, vec![("run".into(), ObsColumn::Int(vec![0, 0]))], vec![], &path).unwrap();
        let (obs, m) = read_h5ad(&path, &CountSource::X, GeneOrder::FromFile, None).unwrap();
        assert_eq!(m, cells.counts);
        assert_eq!(obs.obs_names, ["c0", "c1"]);
        assert_eq!(obs.column("cell_type").unwrap(), ["B cells", "NK cells"]);
        assert_eq!(obs.column("run").unwrap(), ["0", "0"]);
        // Above 2^24 float32 is not exact: refused, nothing written.
        cells.counts.data[1] += 1;
        let bad = dir.path().join("bad.h5ad");
        assert!(write_cells_h5ad(&cells, vec![], vec![], &bad).unwrap_err().to_string().contains("2^24"));
        assert!(!bad.exists());
    }
}
