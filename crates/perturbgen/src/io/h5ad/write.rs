//! Writing AnnData `.h5ad` files with dense float64 matrices (tables of pairs × genes: DE
//! statistics, predictions) or a CSR count matrix (cells × genes: generated cells), following the [AnnData on-disk format](https://anndata.readthedocs.io/en/latest/fileformat-prose.html)
//! of anndata ≥ 0.8: every element carries `encoding-type` / `encoding-version` attributes; obs
//! and var are `dataframe` groups (`_index`, `column-order`); strings are variable-length UTF-8
//! (`string-array`, `string`); X and the layers are dense `array`s, or X a `csr_matrix` group
//! (`data`, `indices`, `indptr`, attribute `shape`); `layers`, `uns`, `obsm`,
//! `varm`, `obsp`, `varp` are `dict` groups.
//!
//! The file is written to a hidden temporary name in the target's folder and renamed once
//! complete and closed ([`crate::atomic::AtomicFile`]): a reader never sees half a file.
use crate::atomic::AtomicFile;
use crate::counts::CountMatrix;
use crate::error::{Error, Result};
use hdf5_metno as hdf5;
use hdf5::types::VarLenUnicode;
use hdf5::{Group, Location};
use std::borrow::Cow;
use std::path::Path;
use std::str::FromStr;

/// One obs column.
#[derive(Debug, Clone, PartialEq)]
pub enum ObsColumn {
    /// A `string-array` (object dtype in pandas).
    Strings(Vec<String>),
    /// A pandas `category` column: unordered, categories in byte order (what scanpy groups by).
    Categorical(Vec<String>),
    /// A numpy bool array.
    Bool(Vec<bool>),
    /// A numpy int64 array.
    Int(Vec<i64>),
}

impl ObsColumn {
    fn len(&self) -> usize {
        match self {
            ObsColumn::Strings(v) | ObsColumn::Categorical(v) => v.len(),
            ObsColumn::Bool(v) => v.len(),
            ObsColumn::Int(v) => v.len(),
        }
    }
}

/// An entry of `uns`: a string or a dict of entries.
#[derive(Debug, Clone, PartialEq)]
pub enum UnsValue {
    String(String),
    Dict(Vec<(String, UnsValue)>),
}

/// A dense AnnData object: obs × var float64 X and layers, row-major (borrowed where the
/// caller has them already: a Kaggle-size table's five layers are ~450 MB).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DenseAnnData<'a> {
    pub obs_names: Vec<String>,
    pub obs: Vec<(String, ObsColumn)>,
    pub var_names: Vec<String>,
    pub x: Cow<'a, [f64]>,
    pub layers: Vec<(String, Cow<'a, [f64]>)>,
    pub uns: Vec<(String, UnsValue)>,
}

fn cannot_write(path: &Path, m: String) -> Error {
    Error::invalid(path, format!("cannot write AnnData: {m}"))
}

/// obs and var names unique, every obs column one value per obs name.
fn check_frames(path: &Path, obs_names: &[String], obs: &[(String, ObsColumn)], var_names: &[String]) -> Result<()> {
    for (names, what) in [(obs_names, "obs_names"), (var_names, "var_names")] {
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = names.iter().find(|s| !seen.insert(s.as_str())) {
            return Err(cannot_write(path, format!("{what} lists `{dup}` twice")));
        }
    }
    let n = obs_names.len();
    if let Some((name, c)) = obs.iter().find(|(_, c)| c.len() != n) {
        return Err(cannot_write(path, format!("obs column `{name}` has {} values for {n} rows", c.len())));
    }
    Ok(())
}

/// Writes the file at a temporary name through `fill` and renames it into place once closed.
fn write_file(path: &Path, fill: impl FnOnce(&Group) -> hdf5::Result<()>) -> Result<()> {
    let file = AtomicFile::create(path)?;
    let err = |e: hdf5::Error| Error::invalid(path, format!("cannot write the .h5ad file ({})", e.to_string().lines().next().unwrap_or("").trim()));
    {
        let h5 = hdf5::File::create(file.temp_path()).map_err(err)?;
        fill(&h5).map_err(err)?;
        h5.close().map_err(err)?;
    }
    file.commit()
}

/// Everything but X and the layers: the root's encoding, obs, var, uns and the empty dicts.
fn write_frames(root: &Group, obs_names: &[String], obs: &[(String, ObsColumn)], var_names: &[String], uns: &[(String, UnsValue)]) -> hdf5::Result<()> {
    encoding(root, "anndata", "0.1.0")?;
    write_dataframe(&root.create_group("obs")?, obs_names, obs)?;
    write_dataframe(&root.create_group("var")?, var_names, &[])?;
    write_uns(&dict(root, "uns")?, uns)?;
    for name in ["obsm", "varm", "obsp", "varp"] {
        dict(root, name)?;
    }
    Ok(())
}

impl DenseAnnData<'_> {
    fn check(&self, path: &Path) -> Result<()> {
        let (n, g) = (self.obs_names.len(), self.var_names.len());
        let bad = |m: String| Err(cannot_write(path, m));
        check_frames(path, &self.obs_names, &self.obs, &self.var_names)?;
        for (name, m) in std::iter::once(("X", &self.x)).chain(self.layers.iter().map(|(k, v)| (k.as_str(), v))) {
            if m.len() != n * g {
                return bad(format!("`{name}` has {} values, expected {n} × {g}", m.len()));
            }
        }
        Ok(())
    }

    /// Writes the object to `path` (all or nothing).
    pub fn write(&self, path: &Path) -> Result<()> {
        self.check(path)?;
        write_file(path, |root| self.write_into(root))
    }

    fn write_into(&self, root: &Group) -> hdf5::Result<()> {
        write_frames(root, &self.obs_names, &self.obs, &self.var_names, &self.uns)?;
        let shape = [self.obs_names.len(), self.var_names.len()];
        write_dense(root, "X", &self.x, shape)?;
        let layers = dict(root, "layers")?;
        for (name, values) in &self.layers {
            write_dense(&layers, name, values, shape)?;
        }
        Ok(())
    }
}

/// Cells × genes counts as an AnnData object: X a CSR matrix (float32, what scanpy expects of
/// counts; exact up to 2^24), var = the count matrix's genes, no layers.
#[derive(Debug, Clone)]
pub struct CountsAnnData<'a> {
    pub obs_names: Vec<String>,
    pub obs: Vec<(String, ObsColumn)>,
    pub counts: &'a CountMatrix,
    pub uns: Vec<(String, UnsValue)>,
}

/// The largest count float32 holds exactly.
const F32_EXACT: u32 = 1 << 24;

impl CountsAnnData<'_> {
    /// Writes the object to `path` (all or nothing).
    pub fn write(&self, path: &Path) -> Result<()> {
        check_frames(path, &self.obs_names, &self.obs, &self.counts.genes)?;
        let m = self.counts;
        if m.n_cells() != self.obs_names.len() {
            return Err(cannot_write(path, format!("{} rows of counts for {} obs names", m.n_cells(), self.obs_names.len())));
        }
        if let Some(big) = m.data.iter().find(|&&c| c > F32_EXACT) {
            return Err(cannot_write(path, format!("count {big} is above 2^24, which float32 does not hold exactly")));
        }
        write_file(path, |root| {
            write_frames(root, &self.obs_names, &self.obs, &m.genes, &self.uns)?;
            dict(root, "layers")?;
            let x = root.create_group("X")?;
            encoding(&x, "csr_matrix", "0.1.0")?;
            x.new_attr::<i64>().shape([2]).create("shape")?.write_raw(&[m.n_cells() as i64, m.n_genes() as i64])?;
            let data: Vec<f32> = m.data.iter().map(|&c| c as f32).collect();
            write_vector(&x, "data", &data)?;
            // indices and indptr of one integer type, as anndata writes them: scipy refuses
            // mixed ones (e.g. in eliminate_zeros, which scanpy's rank_genes_groups calls).
            if m.nnz() <= i32::MAX as usize {
                write_vector(&x, "indices", &m.indices.iter().map(|&j| j as i32).collect::<Vec<_>>())?;
                write_vector(&x, "indptr", &m.indptr.iter().map(|&p| p as i32).collect::<Vec<_>>())
            } else {
                write_vector(&x, "indices", &m.indices.iter().map(|&j| i64::from(j)).collect::<Vec<_>>())?;
                write_vector(&x, "indptr", &m.indptr.iter().map(|&p| p as i64).collect::<Vec<_>>())
            }
        })
    }
}

/// A 1-D array of a CSR matrix, in chunks of 2^20 entries, gzip-compressed where available.
fn write_vector<T: hdf5::H5Type>(parent: &Group, name: &str, values: &[T]) -> hdf5::Result<()> {
    let mut builder = parent.new_dataset::<T>();
    if !values.is_empty() {
        builder = builder.chunk([values.len().min(1 << 20)]);
        if hdf5::filters::deflate_available() {
            builder = builder.shuffle().deflate(4);
        }
    }
    let ds = builder.shape([values.len()]).create(name)?;
    ds.write_raw(values)
}

fn vlu(s: &str) -> hdf5::Result<VarLenUnicode> {
    VarLenUnicode::from_str(s).map_err(|e| hdf5::Error::from(format!("string `{}` cannot be stored: {e}", s.escape_debug())))
}

fn string_attr(loc: &Location, name: &str, value: &str) -> hdf5::Result<()> {
    loc.new_attr::<VarLenUnicode>().create(name)?.write_scalar(&vlu(value)?)
}

fn encoding(loc: &Location, kind: &str, version: &str) -> hdf5::Result<()> {
    string_attr(loc, "encoding-type", kind)?;
    string_attr(loc, "encoding-version", version)
}

fn dict(parent: &Group, name: &str) -> hdf5::Result<Group> {
    let g = parent.create_group(name)?;
    encoding(&g, "dict", "0.1.0")?;
    Ok(g)
}

fn write_strings(parent: &Group, name: &str, values: &[String]) -> hdf5::Result<()> {
    let data = values.iter().map(|s| vlu(s)).collect::<hdf5::Result<Vec<_>>>()?;
    let ds = parent.new_dataset::<VarLenUnicode>().shape([data.len()]).create(name)?;
    ds.write_raw(&data)?;
    encoding(&ds, "string-array", "0.2.0")
}

fn write_dataframe(g: &Group, index: &[String], columns: &[(String, ObsColumn)]) -> hdf5::Result<()> {
    encoding(g, "dataframe", "0.2.0")?;
    string_attr(g, "_index", "_index")?;
    let order = columns.iter().map(|(n, _)| vlu(n)).collect::<hdf5::Result<Vec<_>>>()?;
    if order.is_empty() {
        // What h5py (and so anndata) writes for an empty list: a float64 array of length 0.
        g.new_attr::<f64>().shape([0]).create("column-order")?;
    } else {
        g.new_attr::<VarLenUnicode>().shape([order.len()]).create("column-order")?.write_raw(&order)?;
    }
    write_strings(g, "_index", index)?;
    for (name, column) in columns {
        match column {
            ObsColumn::Strings(v) => write_strings(g, name, v)?,
            ObsColumn::Bool(v) => {
                let ds = g.new_dataset::<bool>().shape([v.len()]).create(name.as_str())?;
                ds.write_raw(v)?;
                encoding(&ds, "array", "0.2.0")?;
            }
            ObsColumn::Int(v) => {
                let ds = g.new_dataset::<i64>().shape([v.len()]).create(name.as_str())?;
                ds.write_raw(v)?;
                encoding(&ds, "array", "0.2.0")?;
            }
            ObsColumn::Categorical(v) => {
                let mut categories: Vec<String> = v.clone();
                categories.sort();
                categories.dedup();
                let codes: Vec<i32> = v.iter().map(|s| categories.binary_search(s).expect("listed") as i32).collect();
                let cg = g.create_group(name)?;
                encoding(&cg, "categorical", "0.2.0")?;
                cg.new_attr::<bool>().create("ordered")?.write_scalar(&false)?;
                write_strings(&cg, "categories", &categories)?;
                let ds = cg.new_dataset::<i32>().shape([codes.len()]).create("codes")?;
                ds.write_raw(&codes)?;
                encoding(&ds, "array", "0.2.0")?;
            }
        }
    }
    Ok(())
}

/// A dense float64 matrix, in row chunks of about 1 MiB, gzip-compressed where the HDF5
/// library has zlib (h5py and every HDF5 reader decode it; p-values and logFC of the Kaggle
/// table shrink to roughly half).
fn write_dense(parent: &Group, name: &str, values: &[f64], shape: [usize; 2]) -> hdf5::Result<()> {
    let mut builder = parent.new_dataset::<f64>();
    if shape[0] > 0 && shape[1] > 0 {
        let rows = ((1usize << 17) / shape[1]).clamp(1, shape[0]);
        builder = builder.chunk([rows, shape[1]]);
        if hdf5::filters::deflate_available() {
            builder = builder.shuffle().deflate(4);
        }
    }
    let ds = builder.shape(shape).create(name)?;
    ds.write_raw(values)?;
    encoding(&ds, "array", "0.2.0")
}

fn write_uns(g: &Group, entries: &[(String, UnsValue)]) -> hdf5::Result<()> {
    for (name, value) in entries {
        match value {
            UnsValue::String(s) => {
                let ds = g.new_dataset::<VarLenUnicode>().create(name.as_str())?;
                ds.write_scalar(&vlu(s)?)?;
                encoding(&ds, "string", "0.2.0")?;
            }
            UnsValue::Dict(inner) => write_uns(&dict(g, name)?, inner)?,
        }
    }
    Ok(())
}
