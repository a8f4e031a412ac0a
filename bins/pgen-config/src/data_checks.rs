//! `pgen-config cells`: the config against the cells, read with the pipeline's own readers.
use anyhow::{Context, Result};
use perturbgen::config_check::{check, CellCounts, CheckedConfig, IdMapCellTypes, ReadError};
use std::collections::BTreeMap;
use std::path::Path;

/// The study's column names (config input.columns), keyed by the pipeline's.
fn input_columns(whole: &serde_json::Value) -> BTreeMap<String, String> {
    whole
        .pointer("/input/columns")
        .and_then(|c| c.as_object())
        .map(|m| m.iter().filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string()))).collect())
        .unwrap_or_default()
}

fn id_map_cell_types(path: &Path) -> Result<IdMapCellTypes> {
    let ids = perturbgen::io::id_map::IdMap::read(path)?;
    let cell_types: std::collections::BTreeSet<String> = ids.rows.iter().map(|r| r.cell_type.clone()).collect();
    Ok(IdMapCellTypes { source: path.display().to_string(), cell_types: cell_types.into_iter().collect() })
}

pub fn run(config: &Path, cells: Option<&Path>, id_map: Option<&Path>, unreadable: i32) -> Result<()> {
    let text = std::fs::read_to_string(config).with_context(|| format!("{}: cannot read", config.display()))?;
    let whole: serde_json::Value = serde_yaml_ng::from_str(&text).map_err(|e| anyhow::anyhow!("{}: not a YAML/JSON config: {e}", config.display()))?;
    let checked: CheckedConfig = serde_path_to_error::deserialize(whole.clone()).map_err(|e| {
        let path = e.path().to_string();
        anyhow::anyhow!("{path}: {}", e.into_inner())
    })?;
    let counts = match cells.map(|p| CellCounts::read(p, &input_columns(&whole))).transpose() {
        Ok(c) => c,
        Err(ReadError::Config(line)) => anyhow::bail!(line),
        Err(ReadError::Unreadable(why)) => {
            log::warn!("cells not checked now: {why}");
            std::process::exit(unreadable);
        }
    };
    // An id_map that cannot be read now is left to the split stage.
    let ids = id_map.and_then(|p| id_map_cell_types(p).map_err(|e| log::warn!("id_map not checked now: {e:#}")).ok());
    check(&checked, counts.as_ref(), ids.as_ref()).map_err(anyhow::Error::msg)?;
    let summary = serde_json::json!({
        "cell_types": counts.as_ref().map(|c| c.cell_types.clone()),
        "compounds": counts.as_ref().map(|c| c.compounds.len()),
    });
    println!("{summary}");
    Ok(())
}
