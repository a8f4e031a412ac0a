//! A route's prediction as AnnData: obs = the target (cell type, compound) pairs with the
//! compound's metadata (cell_type, sm_name, sm_lincs_id, SMILES, control), var = the genes,
//! X = the prediction's signed −log10 P values (the parquet's, unchanged); where the route ran
//! limma (the generative routes, external), layers = limma's logFC, AveExpr, t, P.Value and
//! adj.P.Val of the same pairs and `uns/limma` its settings; `uns/route` the route's name and
//! `uns/settings` the config sections its prediction depends on.
use crate::error::{Error, Result};
use crate::io::de_stats::{pair_obs, pair_obs_names, DeStats};
use crate::io::de_table::DeTable;
use crate::io::h5ad::{DenseAnnData, UnsValue};
use std::borrow::Cow;
use std::path::Path;

/// `table` as AnnData (see the module documentation). `stats`, when given, must be of the same
/// pairs in the same order and genes, its signed −log10 P equal to `table`'s values (limma's
/// numbers of this very prediction; `stats_path` names it in errors).
pub fn prediction_anndata<'a>(
    table: &'a DeTable,
    stats: Option<(&'a DeStats, &Path)>,
    route: &str,
    settings: &[(String, String)],
) -> Result<DenseAnnData<'a>> {
    let mut uns = vec![
        ("route".to_string(), UnsValue::String(route.to_string())),
        ("settings".to_string(), UnsValue::Dict(settings.iter().map(|(k, v)| (k.clone(), UnsValue::String(v.clone()))).collect())),
    ];
    let mut layers = Vec::new();
    if let Some((stats, path)) = stats {
        check_same_prediction(table, stats, path)?;
        layers = stats.layers().iter().map(|&(n, v)| (n.to_string(), Cow::Borrowed(v))).collect();
        uns.push(("limma".into(), UnsValue::Dict(stats.settings.iter().map(|(k, v)| (k.clone(), UnsValue::String(v.clone()))).collect())));
    }
    Ok(DenseAnnData {
        obs_names: pair_obs_names(&table.keys),
        obs: pair_obs(&table.keys),
        var_names: table.genes.clone(),
        x: Cow::Borrowed(&table.values),
        layers,
        uns,
    })
}

/// The statistics are limma's of this prediction: same pairs, order and genes, and
/// sign(logFC)·−log10 P equal to every value (a stale or foreign file is refused).
fn check_same_prediction(table: &DeTable, stats: &DeStats, path: &Path) -> Result<()> {
    let pairs = |keys: &[crate::io::de_table::DeRowKey]| keys.iter().map(|k| (k.cell_type.clone(), k.sm_name.clone())).collect::<Vec<_>>();
    if pairs(&table.keys) != pairs(&stats.keys) {
        return Err(Error::invalid(path, format!("its {} (cell type, compound) rows are not the prediction's {} rows in the same order", stats.n_rows(), table.n_rows())));
    }
    if table.genes != stats.genes {
        return Err(Error::invalid(path, "its genes are not the prediction's (same names in the same order)"));
    }
    let signed = stats.table().values;
    if let Some(i) = (0..signed.len()).find(|&i| signed[i] != table.values[i]) {
        let g = table.genes.len();
        return Err(Error::invalid(path, format!(
            "sign(logFC)·−log10 P.Value = {} at row {}, gene {}, but the prediction has {}",
            signed[i], i / g + 1, table.genes[i % g], table.values[i]
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::de_table::DeRowKey;
    use crate::io::h5ad::read_dense_h5ad;

    fn key(ct: &str, sm: &str) -> DeRowKey {
        DeRowKey { cell_type: ct.into(), sm_name: sm.into(), sm_lincs_id: format!("L-{sm}"), smiles: "CCO".into(), control: false }
    }

    fn stats() -> DeStats {
        DeStats {
            keys: vec![key("B cells", "A"), key("NK cells", "A")],
            genes: vec!["G1".into(), "G2".into()],
            log_fc: vec![1.0, -2.0, 0.5, 0.0],
            ave_expr: vec![3.0, 4.0, 3.0, 4.0],
            t: vec![2.0, -3.0, 1.0, 0.0],
            p_value: vec![0.01, 0.001, 0.2, 1.0],
            adj_p_value: vec![0.02, 0.002, 0.2, 1.0],
            route: "dgd".into(),
            settings: vec![("design".into(), "~0+Rpert+donor_id".into())],
        }
    }

    #[test]
    fn x_is_the_table_and_layers_are_limmas() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dgd.h5ad");
        let s = stats();
        let table = s.table();
        let settings = vec![("generate".to_string(), "{\"emit\": \"sample\"}".to_string())];
        prediction_anndata(&table, Some((&s, Path::new("de.h5ad"))), "dgd", &settings).unwrap().write(&path).unwrap();
        let h = read_dense_h5ad(&path).unwrap();
        assert_eq!(h.x, table.values);
        assert_eq!(h.layer("logFC").unwrap(), s.log_fc.as_slice());
        assert_eq!(h.layer("adj.P.Val").unwrap(), s.adj_p_value.as_slice());
        assert_eq!(h.uns("route"), Some("dgd"));
        assert_eq!(h.uns("settings/generate"), Some("{\"emit\": \"sample\"}"));
        assert_eq!(h.uns("limma/design"), Some("~0+Rpert+donor_id"));
        assert_eq!(h.obs.column("sm_lincs_id").unwrap(), ["L-A", "L-A"]);
        // Without statistics: X only.
        prediction_anndata(&table, None, "xgb", &[]).unwrap().write(&path).unwrap();
        let h = read_dense_h5ad(&path).unwrap();
        assert!(h.layers.is_empty());
        assert_eq!(h.x, table.values);
    }

    #[test]
    fn foreign_statistics_are_refused() {
        let s = stats();
        let mut table = s.table();
        table.values[3] = 0.25;
        let e = prediction_anndata(&table, Some((&s, Path::new("de.h5ad"))), "dgd", &[]).unwrap_err().to_string();
        assert!(e.contains("de.h5ad") && e.contains("row 2, gene G2"), "{e}");
        let mut other = s.table();
        other.keys.swap(0, 1);
        let e = prediction_anndata(&other, Some((&s, Path::new("de.h5ad"))), "dgd", &[]).unwrap_err().to_string();
        assert!(e.contains("same order"), "{e}");
    }
}
