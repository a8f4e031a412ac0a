//! limma's numbers per (cell type, compound) pair and gene — logFC, AveExpr, t, P.Value,
//! adj.P.Val — kept beside the de_train value sign(logFC)·−log10 P, and their AnnData form:
//! obs = the pairs (cell_type, sm_name, sm_lincs_id, SMILES, control), var = the genes,
//! X = signed −log10 P (the de_train values, bit for bit), layers = the five statistics,
//! uns = `route` and the limma `settings`.
use crate::error::{Error, Result};
use crate::io::de_table::{DeRowKey, DeTable};
use crate::io::h5ad::{read_dense_h5ad, DenseAnnData, ObsColumn, UnsValue};
use crate::limma::signed_log_p;
use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// The layer names, as limma's topTable names its columns.
pub const STAT_LAYERS: [&str; 5] = ["logFC", "AveExpr", "t", "P.Value", "adj.P.Val"];

/// Pairs × genes statistics, each row-major like [`DeTable::values`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeStats {
    pub keys: Vec<DeRowKey>,
    pub genes: Vec<String>,
    pub log_fc: Vec<f64>,
    /// The gene's mean log2-CPM over the samples of the pair's cell type (the same in every
    /// row of one cell type).
    pub ave_expr: Vec<f64>,
    pub t: Vec<f64>,
    pub p_value: Vec<f64>,
    /// Benjamini-Hochberg over the genes of the row's contrast.
    pub adj_p_value: Vec<f64>,
    /// What produced the table (`de_train`, `truth`, a route's name): `uns/route`.
    pub route: String,
    /// How it was produced (design, negative control, …): `uns/settings`.
    pub settings: Vec<(String, String)>,
}

/// The obs names of a table of (cell type, compound) pairs: `cell_type|sm_name`.
pub fn pair_obs_names(keys: &[DeRowKey]) -> Vec<String> {
    keys.iter().map(|k| format!("{}|{}", k.cell_type, k.sm_name)).collect()
}

/// The obs columns of a table of pairs: cell_type and sm_name as categoricals (what scanpy
/// groups by), sm_lincs_id and SMILES as strings, control as booleans.
pub fn pair_obs(keys: &[DeRowKey]) -> Vec<(String, ObsColumn)> {
    let col = |f: fn(&DeRowKey) -> &String| keys.iter().map(|k| f(k).clone()).collect::<Vec<_>>();
    vec![
        ("cell_type".into(), ObsColumn::Categorical(col(|k| &k.cell_type))),
        ("sm_name".into(), ObsColumn::Categorical(col(|k| &k.sm_name))),
        ("sm_lincs_id".into(), ObsColumn::Strings(col(|k| &k.sm_lincs_id))),
        ("SMILES".into(), ObsColumn::Strings(col(|k| &k.smiles))),
        ("control".into(), ObsColumn::Bool(keys.iter().map(|k| k.control).collect())),
    ]
}

impl DeStats {
    pub fn n_rows(&self) -> usize {
        self.keys.len()
    }

    /// The layers in [`STAT_LAYERS`] order.
    pub fn layers(&self) -> [(&'static str, &[f64]); 5] {
        [
            (STAT_LAYERS[0], &self.log_fc),
            (STAT_LAYERS[1], &self.ave_expr),
            (STAT_LAYERS[2], &self.t),
            (STAT_LAYERS[3], &self.p_value),
            (STAT_LAYERS[4], &self.adj_p_value),
        ]
    }

    fn layers_mut(&mut self) -> [&mut Vec<f64>; 5] {
        [&mut self.log_fc, &mut self.ave_expr, &mut self.t, &mut self.p_value, &mut self.adj_p_value]
    }

    /// sign(logFC)·−log10 P per entry: the de_train table of these rows.
    pub fn table(&self) -> DeTable {
        DeTable {
            keys: self.keys.clone(),
            genes: self.genes.clone(),
            values: self.log_fc.iter().zip(&self.p_value).map(|(&l, &p)| signed_log_p(l, p)).collect(),
        }
    }

    /// The rows `rows`, in that order.
    pub fn take_rows(&self, rows: &[usize]) -> Self {
        let g = self.genes.len();
        let take = |v: &[f64]| rows.iter().flat_map(|&i| v[i * g..(i + 1) * g].iter().copied()).collect();
        Self {
            keys: rows.iter().map(|&i| self.keys[i].clone()).collect(),
            genes: self.genes.clone(),
            log_fc: take(&self.log_fc),
            ave_expr: take(&self.ave_expr),
            t: take(&self.t),
            p_value: take(&self.p_value),
            adj_p_value: take(&self.adj_p_value),
            route: self.route.clone(),
            settings: self.settings.clone(),
        }
    }

    /// Concatenates tables of the same genes, route and settings, rows ordered by (compound,
    /// cell type) — the order of [`crate::baseline::merge_tables`], so the merged .h5ad's rows
    /// are the merged parquet's.
    pub fn merge(tables: Vec<(DeStats, PathBuf)>) -> Result<DeStats> {
        let mut iter = tables.into_iter();
        let Some((first, _)) = iter.next() else { return Err(Error::Data("no DE tables to merge".into())) };
        let mut parts = vec![first];
        for (t, path) in iter {
            let f = &parts[0];
            if t.genes != f.genes {
                return Err(Error::invalid(&path, "genes differ from the first table's"));
            }
            if (&t.route, &t.settings) != (&f.route, &f.settings) {
                return Err(Error::invalid(&path, format!("route/settings {:?} {:?} differ from the first table's {:?} {:?}", t.route, t.settings, f.route, f.settings)));
            }
            parts.push(t);
        }
        let mut rows: Vec<(usize, usize)> = parts.iter().enumerate().flat_map(|(p, t)| (0..t.n_rows()).map(move |i| (p, i))).collect();
        let key = |&(p, i): &(usize, usize)| (&parts[p].keys[i].sm_name, &parts[p].keys[i].cell_type);
        rows.sort_by(|a, b| key(a).cmp(&key(b)));
        if let Some(w) = rows.windows(2).find(|w| key(&w[0]) == key(&w[1])) {
            let (sm, ct) = key(&w[0]);
            return Err(Error::Data(format!("pair ({ct}, {sm}) is in two of the tables")));
        }
        let g = parts[0].genes.len();
        let mut out = DeStats { genes: parts[0].genes.clone(), route: parts[0].route.clone(), settings: parts[0].settings.clone(), ..Default::default() };
        for &(p, i) in &rows {
            out.keys.push(parts[p].keys[i].clone());
            let src = parts[p].layers();
            for (dst, (_, v)) in out.layers_mut().into_iter().zip(src) {
                dst.extend_from_slice(&v[i * g..(i + 1) * g]);
            }
        }
        Ok(out)
    }

    /// The AnnData form (see the module documentation); obs_names are `cell_type|sm_name`.
    pub fn to_anndata(&self) -> DenseAnnData<'_> {
        DenseAnnData {
            obs_names: pair_obs_names(&self.keys),
            obs: pair_obs(&self.keys),
            var_names: self.genes.clone(),
            x: Cow::Owned(self.table().values),
            layers: self.layers().iter().map(|&(n, v)| (n.to_string(), Cow::Borrowed(v))).collect(),
            uns: vec![
                ("route".into(), UnsValue::String(self.route.clone())),
                ("settings".into(), UnsValue::Dict(self.settings.iter().map(|(k, v)| (k.clone(), UnsValue::String(v.clone()))).collect())),
            ],
        }
    }

    pub fn write_h5ad(&self, path: &Path) -> Result<()> {
        self.to_anndata().write(path)
    }

    /// Reads a file [`DeStats::write_h5ad`] wrote; X must equal sign(logFC)·−log10 P of its
    /// layers (a file whose parts disagree is refused rather than merged).
    pub fn read_h5ad(path: &Path) -> Result<DeStats> {
        let h = read_dense_h5ad(path)?;
        let col = |name: &str| {
            h.obs.column(name).ok_or_else(|| Error::invalid(path, format!("obs has no column `{name}` (expected cell_type, sm_name, sm_lincs_id, SMILES, control)")))
        };
        let (ct, sm, lincs, smiles, control) = (col("cell_type")?, col("sm_name")?, col("sm_lincs_id")?, col("SMILES")?, col("control")?);
        let keys = (0..h.obs.obs_names.len())
            .map(|i| {
                let control = match control[i].as_str() {
                    "True" => true,
                    "False" => false,
                    other => return Err(Error::invalid(path, format!("obs/control row {}: `{other}`, expected a boolean", i + 1))),
                };
                Ok(DeRowKey { cell_type: ct[i].clone(), sm_name: sm[i].clone(), sm_lincs_id: lincs[i].clone(), smiles: smiles[i].clone(), control })
            })
            .collect::<Result<Vec<_>>>()?;
        let layer = |name: &str| {
            h.layer(name).map(|v| v.to_vec()).ok_or_else(|| Error::invalid(path, format!("no `layers/{name}` (expected layers {})", STAT_LAYERS.join(", "))))
        };
        let stats = DeStats {
            keys,
            genes: h.var_names.clone(),
            log_fc: layer("logFC")?,
            ave_expr: layer("AveExpr")?,
            t: layer("t")?,
            p_value: layer("P.Value")?,
            adj_p_value: layer("adj.P.Val")?,
            route: h.uns("route").unwrap_or_default().to_string(),
            settings: h.uns.iter().filter_map(|(k, v)| k.strip_prefix("settings/").map(|k| (k.to_string(), v.clone()))).collect(),
        };
        let x = stats.table().values;
        if let Some(i) = (0..x.len()).find(|&i| x[i].to_bits() != h.x[i].to_bits()) {
            let g = stats.genes.len();
            return Err(Error::invalid(path, format!(
                "X[{}, {}] = {} is not sign(logFC)·−log10 P.Value of its layers ({})",
                i / g, stats.genes[i % g], h.x[i], x[i]
            )));
        }
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::h5ad::read_h5ad_obs;

    fn key(ct: &str, sm: &str, control: bool) -> DeRowKey {
        DeRowKey { cell_type: ct.into(), sm_name: sm.into(), sm_lincs_id: format!("LINCS-{sm}"), smiles: "C(=O)O".into(), control }
    }

    fn stats(keys: Vec<DeRowKey>, genes: &[&str], seed: f64) -> DeStats {
        let n = keys.len() * genes.len();
        let f = |k: f64| (0..n).map(|i| ((i as f64 + 1.0) * (seed + k)).sin()).collect::<Vec<_>>();
        let p: Vec<f64> = f(3.0).iter().map(|v| v.abs() * 0.5).collect();
        DeStats {
            keys,
            genes: genes.iter().map(|g| g.to_string()).collect(),
            log_fc: f(1.0),
            ave_expr: f(2.0),
            t: f(4.0),
            adj_p_value: p.iter().map(|v| (v * 2.0).min(1.0)).collect(),
            p_value: p,
            route: "truth".into(),
            settings: vec![("design".into(), "~0+Rpert+donor_id".into()), ("negative_control".into(), "Dimethyl Sulfoxide".into())],
        }
    }

    #[test]
    fn h5ad_round_trip_is_exact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("de.h5ad");
        let mut s = stats(vec![key("B cells", "Belinostat", true), key("NK cells", "µ-agonist, \"x\" (1)", false)], &["A1BG", "TP53", "GENE-3"], 0.7);
        s.p_value[0] = 0.0; // underflow: X uses machine epsilon, the layer keeps 0
        s.write_h5ad(&path).unwrap();
        let back = DeStats::read_h5ad(&path).unwrap();
        assert_eq!(back, s);
        // The existing reader sees the same obs (categoricals decoded, booleans as text).
        let obs = read_h5ad_obs(&path).unwrap();
        assert_eq!(obs.obs_names, vec!["B cells|Belinostat", "NK cells|µ-agonist, \"x\" (1)"]);
        assert_eq!(obs.column("control").unwrap(), ["True", "False"]);
        assert_eq!(obs.column("sm_lincs_id").unwrap(), ["LINCS-Belinostat", "LINCS-µ-agonist, \"x\" (1)"]);
        let h = read_dense_h5ad(&path).unwrap();
        assert_eq!(h.x, s.table().values);
        assert_eq!(h.x[0], f64::EPSILON.log10().abs() * h.layer("logFC").unwrap()[0].signum());
        assert_eq!(h.uns("route"), Some("truth"));
        assert_eq!(h.uns("settings/design"), Some("~0+Rpert+donor_id"));
        // Nothing but the file itself is left in the folder.
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("de.h5ad")]);
    }

    #[test]
    fn empty_table_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.h5ad");
        let s = stats(vec![], &["A", "B"], 1.0);
        s.write_h5ad(&path).unwrap();
        assert_eq!(DeStats::read_h5ad(&path).unwrap(), s);
    }

    #[test]
    fn merge_orders_rows_like_the_parquet_merge() {
        let genes = ["G1", "G2"];
        let a = stats(vec![key("NK cells", "Zeta", false), key("NK cells", "Alpha", false)], &genes, 0.3);
        let b = stats(vec![key("B cells", "Alpha", false), key("B cells", "Mid", true)], &genes, 0.9);
        let tables = vec![(a.clone(), PathBuf::from("a")), (b.clone(), PathBuf::from("b"))];
        let merged = DeStats::merge(tables).unwrap();
        let parquet = crate::baseline::merge_tables(vec![(a.table(), PathBuf::from("a")), (b.table(), PathBuf::from("b"))]).unwrap();
        assert_eq!(merged.table(), parquet);
        assert_eq!(merged.keys.iter().map(|k| (k.cell_type.as_str(), k.sm_name.as_str())).collect::<Vec<_>>(),
                   [("B cells", "Alpha"), ("NK cells", "Alpha"), ("B cells", "Mid"), ("NK cells", "Zeta")]);
        // Two genes a row: merged row 2 is b's row 1, merged row 0 b's row 0.
        assert_eq!(&merged.t[4..6], &b.t[2..4]);
        assert_eq!(&merged.adj_p_value[0..2], &b.adj_p_value[0..2]);
        assert_eq!(&merged.ave_expr[6..8], &a.ave_expr[0..2]);
        let dup = DeStats::merge(vec![(a.clone(), PathBuf::from("a")), (a.clone(), PathBuf::from("a2"))]).unwrap_err();
        assert!(dup.to_string().contains("in two of the tables"), "{dup}");
        let mut other = b.clone();
        other.route = "de_train".into();
        assert!(DeStats::merge(vec![(a, PathBuf::from("a")), (other, PathBuf::from("b"))]).is_err());
    }

    #[test]
    fn inconsistent_x_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.h5ad");
        let s = stats(vec![key("B cells", "X", false)], &["G1", "G2"], 0.5);
        let mut a = s.to_anndata();
        a.x.to_mut()[1] += 1.0;
        a.write(&path).unwrap();
        let e = DeStats::read_h5ad(&path).unwrap_err().to_string();
        assert!(e.contains("X[0, G2]") && e.contains("not sign(logFC)"), "{e}");
    }

    #[test]
    fn failed_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dup.h5ad");
        let s = stats(vec![key("B cells", "X", false), key("B cells", "X", false)], &["G1"], 0.5);
        let e = s.write_h5ad(&path).unwrap_err().to_string();
        assert!(e.contains("twice"), "{e}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
