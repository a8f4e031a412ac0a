//! Gene lists: a text file with one gene per line, or the gene columns of a de_train-layout
//! parquet file (every column after the row keys, in file order).
use crate::error::{Error, Result};
use crate::io::de_table::DE_KEY_COLUMNS;
use std::collections::HashSet;
use std::path::Path;

pub fn read_gene_list(path: &Path) -> Result<Vec<String>> {
    let genes = if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet")) {
        let builder = crate::io::parquet_util::open(path)?;
        builder
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|n| !DE_KEY_COLUMNS.contains(&n.as_str()) && n != "__index_level_0__")
            .collect::<Vec<_>>()
    } else {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        text.lines().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()).collect()
    };
    if genes.is_empty() {
        return Err(Error::invalid(path, "no genes listed (expected one gene name per line, or gene columns)"));
    }
    let mut seen = HashSet::new();
    for (i, g) in genes.iter().enumerate() {
        if !seen.insert(g.as_str()) {
            return Err(Error::bad_value(path, i as u64 + 1, "gene", "unique gene names", format!("`{g}` again")));
        }
    }
    Ok(genes)
}

pub fn write_gene_list(path: &Path, genes: &[String]) -> Result<()> {
    crate::atomic::write_atomic(path, |w| {
        for g in genes {
            writeln!(w, "{g}")?;
        }
        Ok(())
    })
}
