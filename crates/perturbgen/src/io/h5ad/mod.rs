//! AnnData `.h5ad` files (what scanpy, scvi-tools and pertpy keep data in) → the obs table as
//! text and the CSR [`CountMatrix`].
//!
//! HDF5 itself is read through `hdf5-metno` (the maintained fork of hdf5-rust) over the system
//! libhdf5. The AnnData encoding layer on top of it (dataframes, categoricals, string arrays,
//! sparse matrices) is written here by hand: the only Rust AnnData crate, `anndata` (+
//! `anndata-hdf5`, kaizhang/anndata-rs), brings polars into the core crate, needs a newer Rust
//! than the workspace's `rust-version`, builds its own blosc/zlib and pins another hdf5-metno; and
//! reading counts through it would mean its own matrix types between the file and our CSR. The
//! layer is small: the [AnnData on-disk format](https://anndata.readthedocs.io/en/latest/fileformat-prose.html),
//! current (`encoding-type` attributes) and anndata < 0.8 (categorical codes with a `categories`
//! attribute pointing into `__categories`, `h5sparse_*` attributes, `raw.X`).
//!
//! Counts are streamed: CSR reads `indptr` whole and then `indices`/`data` in hyperslabs of
//! [`CHUNK_ENTRIES`] entries (whole rows); CSC counts each row's entries in a first pass over
//! `indices` and scatters in a second; dense arrays are read in blocks of rows. While the pool
//! validates and converts one chunk, the next one is read (HDF5 calls are serialised by
//! hdf5-metno's global lock anyway, so reading in parallel would gain nothing). Peak memory is
//! the CSR being built plus two chunks and one chunk's converted entries. Results do not depend
//! on the thread count: chunks and blocks are assembled in file order, rows are sorted by gene,
//! and of several bad values the first in file order is reported.
mod counts;
mod csr;
mod encoding;
mod write;

pub use write::{CountsAnnData, DenseAnnData, ObsColumn, UnsValue};

use crate::counts::CountMatrix;
use crate::error::Result;
use crate::io::counts::GeneOrder;
use crate::io::cell_gene_keys::excluded_keys;
use crate::io::excluded::ExcludedIds;
use counts::Ctx;
use encoding::{Matrix, H5};
use rustc_hash::{FxHashMap, FxHashSet};
use std::path::Path;

/// Entries read per hyperslab (CSR/CSC), or the cells × genes of one block of a dense array:
/// 16 MB per chunk in flight (indices as i64, values as i64/f64). Measured on a 200k × 2000 CSR
/// with 20M entries (CSR 162 MB): Rust heap peak 226 MB, RSS 270 MB (libhdf5 included).
pub const CHUNK_ENTRIES: usize = 1 << 20;

/// Where the raw counts are in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CountSource {
    /// `X`.
    X,
    /// `layers/<name>` (e.g. `counts` when X holds normalised values).
    Layer(String),
    /// `raw/X` (`raw.X` in files of anndata < 0.7); its genes are `raw/var`'s.
    RawX,
}

impl std::fmt::Display for CountSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CountSource::X => write!(f, "X"),
            CountSource::Layer(name) => write!(f, "layers/{name}"),
            CountSource::RawX => write!(f, "raw/X"),
        }
    }
}

/// The obs dataframe of an `.h5ad` file, every value as text.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct H5adObs {
    /// obs_names (the obs dataframe's index, attribute `_index`), one per cell, file order.
    pub obs_names: Vec<String>,
    /// Every obs column, values as text: categoricals decoded to their category strings,
    /// strings as is, integers as `{}`, floats as Rust `{}` Display (NaN → ""), booleans "True"/"False".
    /// Missing values (categorical code -1, the mask of pandas' nullable dtypes) are "".
    pub columns: Vec<(String, Vec<String>)>,
}

impl H5adObs {
    /// The values of column `name`.
    pub fn column(&self, name: &str) -> Option<&[String]> {
        self.columns.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice())
    }
}

/// Reads only the obs dataframe (the config checks: cell types and compounds without the counts).
pub fn read_h5ad_obs(path: &Path) -> Result<H5adObs> {
    H5::open(path)?.dataframe("obs", true)
}

/// The gene names (var names) of the counts at `source`, in file order: `var`'s index, or
/// `raw/var`'s for `raw/X` (the check of a file's genes before its counts are read).
pub fn read_h5ad_var_names(path: &Path, source: &CountSource) -> Result<Vec<String>> {
    let f = H5::open(path)?;
    let (_, var_path) = f.count_source(source)?;
    Ok(f.dataframe(&var_path, false)?.obs_names)
}

/// A dense `.h5ad` as read back: obs as text (see [`H5adObs`]), var names, X and the layers
/// as row-major float64, and uns's string entries (nested dicts as `outer/inner` keys).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DenseH5ad {
    pub obs: H5adObs,
    pub var_names: Vec<String>,
    pub x: Vec<f64>,
    pub layers: Vec<(String, Vec<f64>)>,
    pub uns: Vec<(String, String)>,
}

impl DenseH5ad {
    pub fn layer(&self, name: &str) -> Option<&[f64]> {
        self.layers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice())
    }

    pub fn uns(&self, key: &str) -> Option<&str> {
        self.uns.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Reads an `.h5ad` whose X and layers are dense arrays (the tables [`DenseAnnData`] writes, or
/// any such file from anndata), the layers in sorted order.
pub fn read_dense_h5ad(path: &Path) -> Result<DenseH5ad> {
    let f = H5::open(path)?;
    let obs = f.dataframe("obs", true)?;
    let var_names = f.dataframe("var", false)?.obs_names;
    let shape = (obs.obs_names.len(), var_names.len());
    let x = f.dense_f64("X", shape)?;
    let layers = f
        .members_if_any("layers")?
        .into_iter()
        .map(|name| {
            let values = f.dense_f64(&format!("layers/{name}"), shape)?;
            Ok((name, values))
        })
        .collect::<Result<Vec<_>>>()?;
    let uns = f.string_entries("uns")?;
    Ok(DenseH5ad { obs, var_names, x, layers, uns })
}

/// Reads the obs table and the counts of `source`: rows are the cells in obs order; columns
/// follow `genes` (`Given`: that list, a file gene outside it is an error and list genes the file
/// lacks are all-zero; `FromFile`: the var names in file order). Counts must be whole
/// non-negative numbers (any integer or float dtype); zeros and `excluded` pairs are not stored.
pub fn read_h5ad(
    path: &Path,
    source: &CountSource,
    genes: GeneOrder<'_>,
    excluded: Option<&ExcludedIds>,
) -> Result<(H5adObs, CountMatrix)> {
    read_h5ad_chunked(path, source, genes, excluded, CHUNK_ENTRIES)
}

/// [`read_h5ad`] with `chunk_entries` entries per read instead of [`CHUNK_ENTRIES`] (tests use
/// tiny chunks so that small files cross chunk boundaries).
pub fn read_h5ad_chunked(
    path: &Path,
    source: &CountSource,
    genes: GeneOrder<'_>,
    excluded: Option<&ExcludedIds>,
    chunk_entries: usize,
) -> Result<(H5adObs, CountMatrix)> {
    let f = H5::open(path)?;
    let obs = f.dataframe("obs", true)?;
    let (matrix_path, var_path) = f.count_source(source)?;
    let var = f.dataframe(&var_path, false)?;
    let var_names = var.obs_names;
    if let Some(dup) = first_duplicate(&var_names) {
        return Err(f.invalid(format!("`{var_path}` lists gene `{dup}` more than once")));
    }
    let (gene_list, col_of) = match genes {
        GeneOrder::FromFile => (var_names.clone(), (0..var_names.len() as u32).collect::<Vec<u32>>()),
        GeneOrder::Given(list) => {
            let index: FxHashMap<&str, u32> = list.iter().enumerate().map(|(i, g)| (g.as_str(), i as u32)).collect();
            let cols = var_names
                .iter()
                .map(|g| {
                    index.get(g.as_str()).copied().ok_or_else(|| {
                        f.invalid(format!("`{var_path}`: gene `{g}` is not in the given gene list ({} genes)", list.len()))
                    })
                })
                .collect::<Result<Vec<u32>>>()?;
            (list.to_vec(), cols)
        }
    };
    let gene_index: FxHashMap<&str, u32> = gene_list.iter().enumerate().map(|(i, g)| (g.as_str(), i as u32)).collect();
    let excluded = excluded_keys(excluded, obs.obs_names.iter().enumerate().map(|(i, o)| (i as u32, o.as_str())), &gene_index);
    let ctx = Ctx {
        h5: &f,
        name: &matrix_path,
        obs_names: &obs.obs_names,
        var_names: &var_names,
        col_of: &col_of,
        excluded: &excluded,
        chunk: chunk_entries.max(1),
    };
    let m = match f.matrix(&matrix_path)? {
        Matrix::Dense(ds) => ctx.read_dense(&ds, gene_list)?,
        Matrix::Sparse { group, csr, shape } => {
            ctx.check_shape(shape)?;
            if csr {
                ctx.read_csr(&group, gene_list)?
            } else {
                ctx.read_csc(&group, gene_list)?
            }
        }
    };
    Ok((obs, m))
}

fn first_duplicate(names: &[String]) -> Option<&str> {
    let mut seen = FxHashSet::default();
    names.iter().find(|n| !seen.insert(n.as_str())).map(|s| s.as_str())
}
