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
use crate::counts::CountMatrix;
use crate::error::{Error, Result};
use crate::io::counts::GeneOrder;
use crate::io::excluded::ExcludedIds;
use hdf5_metno as hdf5;
use hdf5::types::{FixedAscii, FixedUnicode, FloatSize, TypeDescriptor, VarLenAscii, VarLenUnicode};
use hdf5::{Dataset, Group, H5Type, Hyperslab, LocationType, SliceOrIndex};
use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

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
    let excluded = excluded_keys(excluded, &obs.obs_names, &gene_list);
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

// ---- the HDF5 / AnnData encoding layer ---------------------------------------------------------

/// An open file and its path, for error messages.
struct H5<'p> {
    path: &'p Path,
    file: hdf5::File,
}

enum Matrix {
    Dense(Dataset),
    Sparse { group: Group, csr: bool, shape: (usize, usize) },
}

impl<'p> H5<'p> {
    fn open(path: &'p Path) -> Result<Self> {
        // A missing file is an I/O error ("No such file"), not a format problem.
        std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        let file = hdf5::File::open(path)
            .map_err(|e| Error::invalid(path, format!("not a readable HDF5/AnnData file ({})", one_line(&e))))?;
        Ok(Self { path, file })
    }

    fn invalid(&self, message: String) -> Error {
        Error::invalid(self.path, message)
    }

    /// A read that failed inside HDF5: the file is damaged or not what it claims to be.
    fn h5(&self, what: &str) -> impl Fn(hdf5::Error) -> Error + '_ {
        let what = what.to_string();
        move |e| self.invalid(format!("not a readable HDF5/AnnData file (`{what}`: {})", one_line(&e)))
    }

    fn root(&self) -> &Group {
        &self.file
    }

    /// What `name` (a path from the root) is, or None where it does not exist.
    fn kind(&self, name: &str) -> Option<LocationType> {
        let mut at = String::new();
        for part in name.split('/') {
            if !at.is_empty() {
                at.push('/');
            }
            at.push_str(part);
            // link_exists fails (false) when a parent is missing; checked level by level.
            if !self.root().link_exists(&at) {
                return None;
            }
        }
        self.root().loc_type_by_name(name).ok()
    }

    fn group(&self, name: &str) -> Result<Group> {
        self.root().group(name).map_err(self.h5(name))
    }

    fn dataset(&self, name: &str) -> Result<Dataset> {
        self.root().dataset(name).map_err(self.h5(name))
    }

    fn members(&self, name: &str) -> Result<Vec<String>> {
        let mut names = self.group(name)?.member_names().map_err(self.h5(name))?;
        names.sort();
        Ok(names)
    }

    /// The matrix and var dataframe paths of `source`, or an error saying what the file has.
    fn count_source(&self, source: &CountSource) -> Result<(String, String)> {
        match source {
            CountSource::X => {
                if self.kind("X").is_none() {
                    return Err(self.invalid("no `X`".into()));
                }
                Ok(("X".into(), "var".into()))
            }
            CountSource::Layer(layer) => {
                let name = format!("layers/{layer}");
                if self.kind(&name).is_none() {
                    let present = match self.kind("layers") {
                        Some(LocationType::Group) => self.members("layers")?,
                        _ => Vec::new(),
                    };
                    let present = if present.is_empty() { "none".to_string() } else { present.join(", ") };
                    return Err(self.invalid(format!("no `{name}` (layers present: {present})")));
                }
                Ok((name, "var".into()))
            }
            CountSource::RawX => {
                if self.kind("raw/X").is_some() {
                    return Ok(("raw/X".into(), "raw/var".into()));
                }
                // anndata < 0.7 kept raw as top-level `raw.X`, `raw.var`.
                if self.kind("raw.X").is_some() {
                    return Ok(("raw.X".into(), "raw.var".into()));
                }
                let why = match self.kind("raw") {
                    Some(LocationType::Group) => format!("raw has: {}", self.members("raw")?.join(", ")),
                    _ => "the file has no `raw`".into(),
                };
                Err(self.invalid(format!("no `raw/X` ({why})")))
            }
        }
    }

    fn matrix(&self, name: &str) -> Result<Matrix> {
        match self.kind(name) {
            Some(LocationType::Dataset) => {
                let ds = self.dataset(name)?;
                if ds.ndim() != 2 {
                    return Err(self.invalid(format!("`{name}` is a {}-D array, expected a 2-D count matrix", ds.ndim())));
                }
                Ok(Matrix::Dense(ds))
            }
            Some(LocationType::Group) => {
                let group = self.group(name)?;
                let encoding = attr_string(&group, "encoding-type").map_err(self.h5(name))?;
                let legacy = attr_string(&group, "h5sparse_format").map_err(self.h5(name))?;
                let csr = match (encoding.as_deref(), legacy.as_deref()) {
                    (Some("csr_matrix"), _) | (None, Some("csr")) => true,
                    (Some("csc_matrix"), _) | (None, Some("csc")) => false,
                    (found, _) => {
                        return Err(self.invalid(format!(
                            "`{name}` has encoding `{}`, expected csr_matrix, csc_matrix or a dense 2-D array",
                            found.unwrap_or("(none)")
                        )))
                    }
                };
                let shape = match attr_ints(&group, "shape").map_err(self.h5(name))? {
                    Some(s) => Some(s),
                    None => attr_ints(&group, "h5sparse_shape").map_err(self.h5(name))?,
                };
                let shape = match shape.as_deref() {
                    Some(&[r, c]) if r >= 0 && c >= 0 => (r as usize, c as usize),
                    _ => return Err(self.invalid(format!("`{name}` has no valid `shape` attribute (two non-negative integers)"))),
                };
                Ok(Matrix::Sparse { group, csr, shape })
            }
            _ => Err(self.invalid(format!("`{name}` is neither a dataset nor a group"))),
        }
    }

    /// A dataframe group (`obs`, `var`, `raw/var`): its index and, if `columns`, every column.
    fn dataframe(&self, name: &str, columns: bool) -> Result<H5adObs> {
        match self.kind(name) {
            Some(LocationType::Group) => {}
            Some(LocationType::Dataset) => {
                return Err(self.invalid(format!(
                    "`{name}` is a compound dataset (anndata < 0.7); re-save the file with a current anndata"
                )))
            }
            _ => return Err(self.invalid(format!("no `{name}`"))),
        }
        let group = self.group(name)?;
        let index = match attr_string(&group, "_index").map_err(self.h5(name))? {
            Some(index) => index,
            None if group.link_exists("_index") => "_index".into(),
            None if group.link_exists("index") => "index".into(),
            None => return Err(self.invalid(format!("`{name}` has no `_index` attribute (not an AnnData dataframe)"))),
        };
        if !group.link_exists(&index) {
            return Err(self.invalid(format!("no `{name}/{index}` (the index named by `{name}`'s `_index` attribute)")));
        }
        let obs_names = self.column(&group, name, &index, None)?;
        let mut out = H5adObs { obs_names, columns: Vec::new() };
        if !columns {
            return Ok(out);
        }
        let order = match attr_strings(&group, "column-order").map_err(self.h5(name))? {
            Some(order) => order,
            None => {
                let mut all = group.member_names().map_err(self.h5(name))?;
                all.retain(|m| *m != index && m != "__categories");
                all
            }
        };
        let n = out.obs_names.len();
        for col in order {
            let values = self.column(&group, name, &col, Some(n))?;
            out.columns.push((col, values));
        }
        Ok(out)
    }

    /// One dataframe column (or the index) as text; `n` is the length it must have.
    fn column(&self, df: &Group, df_name: &str, col: &str, n: Option<usize>) -> Result<Vec<String>> {
        let full = format!("{df_name}/{col}");
        if !df.link_exists(col) {
            return Err(self.invalid(format!("no `{full}` (listed in `{df_name}`'s column-order)")));
        }
        let values = match df.loc_type_by_name(col).map_err(self.h5(&full))? {
            LocationType::Dataset => {
                let ds = df.dataset(col).map_err(self.h5(&full))?;
                let legacy_categorical = ds.attr_names().map_err(self.h5(&full))?.iter().any(|a| a == "categories");
                if legacy_categorical {
                    // anndata < 0.8: the codes, with `categories` referencing __categories/<col>.
                    let cats_name = format!("__categories/{col}");
                    if !df.link_exists("__categories") || !df.link_exists(&cats_name) {
                        return Err(self.invalid(format!("`{full}` is a categorical whose `{df_name}/{cats_name}` is missing")));
                    }
                    let cats = df.dataset(&cats_name).map_err(self.h5(&cats_name))?;
                    let cats = self.texts(&cats, &format!("{df_name}/{cats_name}"))?;
                    self.decode_categorical(&ds, &full, &cats)?
                } else {
                    self.texts(&ds, &full)?
                }
            }
            LocationType::Group => {
                let g = df.group(col).map_err(self.h5(&full))?;
                let encoding = attr_string(&g, "encoding-type").map_err(self.h5(&full))?.unwrap_or_default();
                let part = |p: &str| -> Result<Dataset> {
                    if !g.link_exists(p) {
                        return Err(self.invalid(format!("no `{full}/{p}` (`{full}` is encoded as {encoding})")));
                    }
                    g.dataset(p).map_err(self.h5(&format!("{full}/{p}")))
                };
                match encoding.as_str() {
                    "categorical" => {
                        let cats = self.texts(&part("categories")?, &format!("{full}/categories"))?;
                        self.decode_categorical(&part("codes")?, &format!("{full}/codes"), &cats)?
                    }
                    "nullable-integer" | "nullable-boolean" | "nullable-string-array" => {
                        let mut values = self.texts(&part("values")?, &format!("{full}/values"))?;
                        let mask: Vec<bool> = read_all(&*part("mask")?).map_err(self.h5(&format!("{full}/mask")))?;
                        if mask.len() != values.len() {
                            return Err(self.invalid(format!("`{full}`: mask has {} values, values has {}", mask.len(), values.len())));
                        }
                        for (v, &missing) in values.iter_mut().zip(&mask) {
                            if missing {
                                v.clear();
                            }
                        }
                        values
                    }
                    other => {
                        return Err(self.invalid(format!(
                            "`{full}` has encoding `{other}`, expected an array, string-array, categorical or nullable column"
                        )))
                    }
                }
            }
            _ => return Err(self.invalid(format!("`{full}` is neither a dataset nor a group"))),
        };
        if let Some(n) = n {
            if values.len() != n {
                return Err(self.invalid(format!("`{full}` has {} values but `{df_name}` has {n} rows", values.len())));
            }
        }
        Ok(values)
    }

    fn decode_categorical(&self, codes: &Dataset, name: &str, cats: &[String]) -> Result<Vec<String>> {
        let codes: Vec<i64> = read_all(codes).map_err(self.h5(name))?;
        codes
            .iter()
            .enumerate()
            .map(|(i, &c)| match c {
                -1 => Ok(String::new()),
                c if c >= 0 && (c as usize) < cats.len() => Ok(cats[c as usize].clone()),
                c => Err(self.invalid(format!("`{name}`: code {c} at row {} is outside the {} categories", i + 1, cats.len()))),
            })
            .collect()
    }

    /// A 1-D dataset of strings, numbers or booleans as text.
    fn texts(&self, ds: &Dataset, name: &str) -> Result<Vec<String>> {
        if ds.ndim() > 1 {
            return Err(self.invalid(format!("`{name}` is a {}-D array, expected one value per row", ds.ndim())));
        }
        let td = ds.dtype().and_then(|t| t.to_descriptor()).map_err(self.h5(name))?;
        let err = self.h5(name);
        let out = match td {
            TypeDescriptor::Integer(_) => read_all::<i64>(ds).map_err(err)?.iter().map(|v| v.to_string()).collect(),
            TypeDescriptor::Unsigned(_) => read_all::<u64>(ds).map_err(err)?.iter().map(|v| v.to_string()).collect(),
            TypeDescriptor::Float(FloatSize::U4) => read_all::<f32>(ds).map_err(err)?.iter().map(|v| float_text(*v as f64, v.to_string())).collect(),
            TypeDescriptor::Float(_) => read_all::<f64>(ds).map_err(err)?.iter().map(|v| float_text(*v, v.to_string())).collect(),
            TypeDescriptor::Boolean => read_all::<bool>(ds).map_err(err)?.iter().map(|&b| if b { "True" } else { "False" }.to_string()).collect(),
            td if is_string(&td) => read_strings(ds, &td).map_err(err)?,
            td => return Err(self.invalid(format!("`{name}` has type {td}, expected strings, numbers or booleans"))),
        };
        Ok(out)
    }
}

fn float_text(v: f64, display: String) -> String {
    if v.is_nan() {
        String::new()
    } else {
        display
    }
}

/// The HDF5 error without the library's multi-line stack.
fn one_line(e: &hdf5::Error) -> String {
    e.to_string().lines().next().unwrap_or("").trim().to_string()
}

fn first_duplicate(names: &[String]) -> Option<&str> {
    let mut seen = FxHashSet::default();
    names.iter().find(|n| !seen.insert(n.as_str())).map(|s| s.as_str())
}

fn is_string(td: &TypeDescriptor) -> bool {
    matches!(td, TypeDescriptor::VarLenUnicode | TypeDescriptor::VarLenAscii | TypeDescriptor::FixedAscii(_) | TypeDescriptor::FixedUnicode(_))
}

fn read_all<T: H5Type>(c: &hdf5::Container) -> hdf5::Result<Vec<T>> {
    c.read_raw::<T>()
}

/// Strings of any HDF5 string type (h5py writes variable-length UTF-8; numpy `S`/`U` arrays and
/// some older writers fixed-length). Fixed-length strings are read through the next larger of a
/// few fixed buffer sizes (HDF5 converts between fixed lengths); invalid UTF-8 is replaced.
fn read_strings(c: &hdf5::Container, td: &TypeDescriptor) -> hdf5::Result<Vec<String>> {
    fn lossy(b: &[u8]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }
    fn fixed<const N: usize>(c: &hdf5::Container, unicode: bool) -> hdf5::Result<Vec<String>> {
        Ok(if unicode {
            c.read_raw::<FixedUnicode<N>>()?.iter().map(|s| lossy(s.as_bytes())).collect()
        } else {
            c.read_raw::<FixedAscii<N>>()?.iter().map(|s| lossy(s.as_bytes())).collect()
        })
    }
    match *td {
        TypeDescriptor::VarLenUnicode => Ok(c.read_raw::<VarLenUnicode>()?.iter().map(|s| lossy(s.as_bytes())).collect()),
        TypeDescriptor::VarLenAscii => Ok(c.read_raw::<VarLenAscii>()?.iter().map(|s| lossy(s.as_bytes())).collect()),
        TypeDescriptor::FixedAscii(n) | TypeDescriptor::FixedUnicode(n) => {
            let unicode = matches!(td, TypeDescriptor::FixedUnicode(_));
            match n {
                0..=16 => fixed::<16>(c, unicode),
                17..=64 => fixed::<64>(c, unicode),
                65..=256 => fixed::<256>(c, unicode),
                257..=1024 => fixed::<1024>(c, unicode),
                _ => fixed::<8192>(c, unicode),
            }
        }
        _ => Err(hdf5::Error::from("not a string type")),
    }
}

fn attr_descriptor(loc: &hdf5::Location, name: &str) -> hdf5::Result<Option<(hdf5::Attribute, TypeDescriptor)>> {
    if !loc.attr_names()?.iter().any(|a| a == name) {
        return Ok(None);
    }
    let attr = loc.attr(name)?;
    let td = attr.dtype()?.to_descriptor()?;
    Ok(Some((attr, td)))
}

/// A string attribute (scalar or one-element array); None if absent or not a string.
fn attr_string(loc: &hdf5::Location, name: &str) -> hdf5::Result<Option<String>> {
    match attr_descriptor(loc, name)? {
        Some((attr, td)) if is_string(&td) => Ok(read_strings(&attr, &td)?.into_iter().next()),
        _ => Ok(None),
    }
}

/// A string-array attribute (`column-order`); an empty array of another type (h5py writes `[]`
/// as float64) is an empty list. None if absent.
fn attr_strings(loc: &hdf5::Location, name: &str) -> hdf5::Result<Option<Vec<String>>> {
    match attr_descriptor(loc, name)? {
        Some((attr, td)) if is_string(&td) => Ok(Some(read_strings(&attr, &td)?)),
        Some((attr, _)) if attr.size() == 0 => Ok(Some(Vec::new())),
        Some(_) => Err(hdf5::Error::from(format!("attribute `{name}` is not a list of strings"))),
        None => Ok(None),
    }
}

fn attr_ints(loc: &hdf5::Location, name: &str) -> hdf5::Result<Option<Vec<i64>>> {
    match attr_descriptor(loc, name)? {
        Some((attr, TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_))) => Ok(Some(attr.read_raw::<i64>()?)),
        _ => Ok(None),
    }
}

// ---- counts ------------------------------------------------------------------------------------

/// Count values as read: integers widened to 64 bits, floats to f64 (both exact).
enum Values {
    Int(Vec<i64>),
    UInt(Vec<u64>),
    Float(Vec<f64>),
}

#[derive(Clone, Copy)]
enum ValueType {
    Int,
    UInt,
    Float,
}

impl Values {
    fn len(&self) -> usize {
        match self {
            Values::Int(v) => v.len(),
            Values::UInt(v) => v.len(),
            Values::Float(v) => v.len(),
        }
    }

    /// Entry `k` as a count, or the offending value as text.
    #[inline]
    fn count(&self, k: usize) -> std::result::Result<u32, String> {
        match self {
            Values::Int(v) => u32::try_from(v[k]).map_err(|_| v[k].to_string()),
            Values::UInt(v) => u32::try_from(v[k]).map_err(|_| v[k].to_string()),
            Values::Float(v) => {
                let x = v[k];
                if x >= 0.0 && x.fract() == 0.0 && x <= u32::MAX as f64 {
                    Ok(x as u32)
                } else {
                    Err(format!("{x}"))
                }
            }
        }
    }
}

fn value_type(ds: &Dataset) -> hdf5::Result<std::result::Result<ValueType, TypeDescriptor>> {
    Ok(match ds.dtype()?.to_descriptor()? {
        TypeDescriptor::Integer(_) => Ok(ValueType::Int),
        TypeDescriptor::Unsigned(_) => Ok(ValueType::UInt),
        TypeDescriptor::Float(_) => Ok(ValueType::Float),
        other => Err(other),
    })
}

/// A hyperslab of a 1-D dataset (`Entries(start, end)`) or whole rows of a 2-D one
/// (`Rows(start, end, n_cols)`), in memory order.
#[derive(Clone, Copy)]
enum Slab {
    Entries(usize, usize),
    Rows(usize, usize, usize),
}

fn read_slab<T: H5Type>(ds: &Dataset, slab: Slab) -> hdf5::Result<Vec<T>> {
    Ok(match slab {
        Slab::Entries(a, b) => ds.read_slice_1d::<T, _>(a..b)?.into_raw_vec_and_offset().0,
        Slab::Rows(r0, r1, n_cols) => {
            let sel = Hyperslab::from(vec![SliceOrIndex::from(r0..r1), SliceOrIndex::from(0..n_cols)]);
            // A freshly read array is in standard (row-major) layout, offset 0.
            ds.read_slice_2d::<T, _>(sel)?.into_raw_vec_and_offset().0
        }
    })
}

fn read_values(ds: &Dataset, vt: ValueType, slab: Slab) -> hdf5::Result<Values> {
    Ok(match vt {
        ValueType::Int => Values::Int(read_slab(ds, slab)?),
        ValueType::UInt => Values::UInt(read_slab(ds, slab)?),
        ValueType::Float => Values::Float(read_slab(ds, slab)?),
    })
}

/// The results of parallel work in order, or the first error in that order (so the error
/// reported does not depend on the thread count).
fn in_order<T>(results: Vec<Result<T>>) -> Result<Vec<T>> {
    results.into_iter().collect()
}

/// What every count layout needs while reading.
struct Ctx<'a> {
    h5: &'a H5<'a>,
    name: &'a str,
    obs_names: &'a [String],
    var_names: &'a [String],
    /// File gene j → output column.
    col_of: &'a [u32],
    excluded: &'a FxHashSet<u64>,
    chunk: usize,
}

impl Ctx<'_> {
    fn n_obs(&self) -> usize {
        self.obs_names.len()
    }

    fn check_shape(&self, (rows, cols): (usize, usize)) -> Result<()> {
        if rows != self.n_obs() {
            return Err(self.h5.invalid(format!("{} has {rows} rows but obs has {} cells", self.name, self.n_obs())));
        }
        if cols != self.var_names.len() {
            return Err(self.h5.invalid(format!("{} has {cols} columns but its var has {} genes", self.name, self.var_names.len())));
        }
        Ok(())
    }

    fn bad_count(&self, dataset: &str, cell: usize, gene: usize, found: String) -> Error {
        self.h5.invalid(format!(
            "`{dataset}`: cell `{}`, gene `{}`: expected a whole non-negative count, found {found}",
            self.obs_names[cell], self.var_names[gene]
        ))
    }

    fn is_excluded(&self, cell: usize, col: u32) -> bool {
        !self.excluded.is_empty() && self.excluded.contains(&pair_key(cell as u32, col))
    }

    fn part(&self, group: &Group, part: &str) -> Result<(Dataset, String)> {
        let full = format!("{}/{part}", self.name);
        if !group.link_exists(part) {
            return Err(self.h5.invalid(format!("no `{full}`")));
        }
        Ok((group.dataset(part).map_err(self.h5.h5(&full))?, full))
    }

    fn value_type(&self, ds: &Dataset, name: &str) -> Result<ValueType> {
        value_type(ds)
            .map_err(self.h5.h5(name))?
            .map_err(|td| self.h5.invalid(format!("`{name}` has type {td}, expected integer or float counts")))
    }

    /// `indptr` of a compressed matrix with `n` major rows over `nnz_max` stored entries.
    fn indptr(&self, group: &Group, n: usize, nnz_max: usize) -> Result<Vec<u64>> {
        let (ds, name) = self.part(group, "indptr")?;
        let raw: Vec<i64> = read_all(&ds).map_err(self.h5.h5(&name))?;
        if raw.len() != n + 1 {
            return Err(self.h5.invalid(format!("`{name}` has {} values, expected {}", raw.len(), n + 1)));
        }
        if raw[0] < 0 || raw.windows(2).any(|w| w[1] < w[0]) || raw[n] as u64 > nnz_max as u64 {
            return Err(self.h5.invalid(format!("`{name}` is not a valid sparse index (negative, decreasing or beyond the {nnz_max} stored entries)")));
        }
        Ok(raw.into_iter().map(|v| v as u64).collect())
    }

    /// Reads chunk after chunk with `read`, handing each to `process` while the next is read.
    fn pipeline<C: Send, R: Send>(
        &self,
        n_chunks: usize,
        read: impl Fn(usize) -> Result<C> + Sync,
        process: impl Fn(usize, C) -> Result<R> + Sync,
        mut consume: impl FnMut(R) -> Result<()>,
    ) -> Result<()> {
        if n_chunks == 0 {
            return Ok(());
        }
        let mut next = Some(read(0));
        for i in 0..n_chunks {
            let current = next.take().expect("read ahead")?;
            let (done, ahead) = rayon::join(|| process(i, current), || (i + 1 < n_chunks).then(|| read(i + 1)));
            next = ahead;
            consume(done?)?;
        }
        Ok(())
    }

    fn read_csr(&self, group: &Group, genes: Vec<String>) -> Result<CountMatrix> {
        let (indices_ds, indices_name) = self.part(group, "indices")?;
        let (data_ds, data_name) = self.part(group, "data")?;
        let vt = self.value_type(&data_ds, &data_name)?;
        let nnz_max = indices_ds.size().min(data_ds.size());
        let indptr = self.indptr(group, self.n_obs(), nnz_max)?;
        let chunks = row_chunks(&indptr, self.chunk);
        let n_var = self.var_names.len();
        let pb = crate::progress::bar(indptr[self.n_obs()] - indptr[0], "reading");
        let mut m = CountMatrix::new(genes);
        m.indptr.reserve_exact(self.n_obs());
        let upper = (indptr[self.n_obs()] - indptr[0]) as usize;
        m.indices.reserve_exact(upper);
        m.data.reserve_exact(upper);
        let read = |i: usize| -> Result<(Vec<i64>, Values)> {
            let (r0, r1) = chunks[i];
            let (e0, e1) = (indptr[r0] as usize, indptr[r1] as usize);
            let idx: Vec<i64> = read_slab(&indices_ds, Slab::Entries(e0, e1)).map_err(self.h5.h5(&indices_name))?;
            let val = read_values(&data_ds, vt, Slab::Entries(e0, e1)).map_err(self.h5.h5(&data_name))?;
            Ok((idx, val))
        };
        let process = |i: usize, (idx, val): (Vec<i64>, Values)| -> Result<(Vec<Block>, u64)> {
            let (r0, r1) = chunks[i];
            let base = indptr[r0] as usize;
            debug_assert_eq!(idx.len(), val.len());
            let blocks = sub_ranges(r0, r1, |r| (indptr[r] as usize) - base, self.chunk / 16 + 1)
                .into_par_iter()
                .map(|(a, b)| {
                    let mut block = Block::default();
                    let mut row = Vec::new();
                    for cell in a..b {
                        row.clear();
                        let (lo, hi) = (indptr[cell] as usize - base, indptr[cell + 1] as usize - base);
                        for (k, &j) in (lo..hi).zip(&idx[lo..hi]) {
                            if j < 0 || j as usize >= n_var {
                                return Err(self.h5.invalid(format!(
                                    "`{indices_name}`: cell `{}` has gene index {j}, beyond the {n_var} genes",
                                    self.obs_names[cell]
                                )));
                            }
                            let count = val.count(k).map_err(|found| self.bad_count(&data_name, cell, j as usize, found))?;
                            let col = self.col_of[j as usize];
                            if count != 0 && !self.is_excluded(cell, col) {
                                row.push((col, count));
                            }
                        }
                        block.push_row(&mut row).map_err(|col| self.overflow(cell, col))?;
                    }
                    Ok(block)
                })
                .collect();
            Ok((in_order(blocks)?, idx.len() as u64))
        };
        self.pipeline(chunks.len(), read, process, |(blocks, n)| {
            pb.inc(n);
            for b in blocks {
                b.append_to(&mut m);
            }
            Ok(())
        })?;
        pb.finish_and_clear();
        m.indices.shrink_to_fit();
        m.data.shrink_to_fit();
        Ok(m)
    }

    fn overflow(&self, cell: usize, col: u32) -> Error {
        self.h5.invalid(format!(
            "`{}`: cell `{}` lists gene column {col} more than once and the counts sum beyond 32 bits",
            self.name, self.obs_names[cell]
        ))
    }

    fn read_csc(&self, group: &Group, genes: Vec<String>) -> Result<CountMatrix> {
        let (indices_ds, indices_name) = self.part(group, "indices")?;
        let (data_ds, data_name) = self.part(group, "data")?;
        let vt = self.value_type(&data_ds, &data_name)?;
        let n_var = self.var_names.len();
        let n_obs = self.n_obs();
        let nnz_max = indices_ds.size().min(data_ds.size());
        let colptr = self.indptr(group, n_var, nnz_max)?;
        let (e_start, e_end) = (colptr[0] as usize, colptr[n_var] as usize);
        let n_chunks = (e_end - e_start).div_ceil(self.chunk);
        let chunk_range = |i: usize| (e_start + i * self.chunk, (e_start + (i + 1) * self.chunk).min(e_end));
        let read_idx = |i: usize| -> Result<Vec<i64>> {
            let (a, b) = chunk_range(i);
            read_slab(&indices_ds, Slab::Entries(a, b)).map_err(self.h5.h5(&indices_name))
        };
        let pb = crate::progress::bar(2 * (e_end - e_start) as u64, "reading");

        // Pass 1: stored entries per cell (an upper bound: zeros and excluded pairs are dropped
        // in pass 2 and the gaps closed at the end).
        let per_cell: Vec<AtomicU32> = (0..n_obs).map(|_| AtomicU32::new(0)).collect();
        self.pipeline(
            n_chunks,
            read_idx,
            |i, idx: Vec<i64>| {
                let (a, _) = chunk_range(i);
                let checked: Vec<Result<()>> = idx.par_chunks(1 << 16).enumerate().map(|(c, part)| {
                    for (k, &r) in part.iter().enumerate() {
                        if r < 0 || r as usize >= n_obs {
                            let entry = a + c * (1 << 16) + k;
                            let gene = colptr.partition_point(|&p| p as usize <= entry) - 1;
                            return Err(self.h5.invalid(format!(
                                "`{indices_name}`: gene `{}` has cell index {r}, beyond the {n_obs} cells",
                                self.var_names[gene]
                            )));
                        }
                        per_cell[r as usize].fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                }).collect();
                in_order(checked)?;
                Ok(idx.len() as u64)
            },
            |n| {
                pb.inc(n);
                Ok(())
            },
        )?;
        let mut indptr = Vec::with_capacity(n_obs + 1);
        indptr.push(0u64);
        for c in &per_cell {
            indptr.push(indptr.last().unwrap() + c.load(Ordering::Relaxed) as u64);
        }
        drop(per_cell);
        let slots = indptr[n_obs] as usize;
        let cursor: Vec<AtomicU64> = indptr[..n_obs].iter().map(|&s| AtomicU64::new(s)).collect();
        let indices: Vec<AtomicU32> = (0..slots).map(|_| AtomicU32::new(0)).collect();
        let data: Vec<AtomicU32> = (0..slots).map(|_| AtomicU32::new(0)).collect();

        // Pass 2: validate and scatter, column by column of each chunk.
        self.pipeline(
            n_chunks,
            |i| -> Result<(Vec<i64>, Values)> {
                let (a, b) = chunk_range(i);
                let val = read_values(&data_ds, vt, Slab::Entries(a, b)).map_err(self.h5.h5(&data_name))?;
                Ok((read_idx(i)?, val))
            },
            |i, (idx, val): (Vec<i64>, Values)| {
                let (a, b) = chunk_range(i);
                debug_assert_eq!(idx.len(), val.len());
                // The genes whose entries overlap [a, b).
                let g0 = colptr.partition_point(|&p| p as usize <= a) - 1;
                let g1 = colptr.partition_point(|&p| (p as usize) < b);
                let scattered: Vec<Result<()>> = (g0..g1).into_par_iter().map(|gene| {
                    let (s, e) = ((colptr[gene] as usize).max(a), (colptr[gene + 1] as usize).min(b));
                    let col = self.col_of[gene];
                    for k in s..e {
                        let cell = idx[k - a] as usize;
                        let count = val.count(k - a).map_err(|found| self.bad_count(&data_name, cell, gene, found))?;
                        if count == 0 || self.is_excluded(cell, col) {
                            continue;
                        }
                        let pos = cursor[cell].fetch_add(1, Ordering::Relaxed) as usize;
                        indices[pos].store(col, Ordering::Relaxed);
                        data[pos].store(count, Ordering::Relaxed);
                    }
                    Ok(())
                }).collect();
                in_order(scattered)?;
                Ok(idx.len() as u64)
            },
            |n| {
                pb.inc(n);
                Ok(())
            },
        )?;
        pb.finish_and_clear();
        let filled: Vec<u64> = cursor.into_iter().map(AtomicU64::into_inner).collect();
        let mut m = CountMatrix {
            genes,
            indptr,
            // In-place collects: the atomics were only needed for the parallel scatter.
            indices: indices.into_iter().map(AtomicU32::into_inner).collect(),
            data: data.into_iter().map(AtomicU32::into_inner).collect(),
        };
        // Rows are sorted by gene (the scatter's order within a row depends on the threads) and
        // duplicates summed, then the gaps closed.
        let mut lens = vec![0u64; n_obs];
        {
            let mut rows: Vec<(&mut [u32], &mut [u32])> = Vec::with_capacity(n_obs);
            let (mut idx, mut dat) = (m.indices.as_mut_slice(), m.data.as_mut_slice());
            for (i, w) in m.indptr.windows(2).enumerate() {
                let (len, used) = ((w[1] - w[0]) as usize, (filled[i] - w[0]) as usize);
                let (a, rest_i) = idx.split_at_mut(len);
                let (b, rest_d) = dat.split_at_mut(len);
                rows.push((&mut a[..used], &mut b[..used]));
                idx = rest_i;
                dat = rest_d;
            }
            let normalised: Vec<Result<()>> = rows
                .par_iter_mut()
                .zip(lens.par_iter_mut())
                .enumerate()
                .map(|(cell, ((idx, dat), len))| {
                    *len = normalise_row(idx, dat).map_err(|col| self.overflow(cell, col))? as u64;
                    Ok(())
                })
                .collect();
            in_order(normalised)?;
        }
        compact(&mut m, &lens);
        Ok(m)
    }

    fn read_dense(&self, ds: &Dataset, genes: Vec<String>) -> Result<CountMatrix> {
        let shape = ds.shape();
        self.check_shape((shape[0], shape[1]))?;
        let name = self.name.to_string();
        let vt = self.value_type(ds, &name)?;
        let n_var = self.var_names.len();
        let n_obs = self.n_obs();
        let rows_per = (self.chunk / n_var.max(1)).max(1);
        let n_chunks = n_obs.div_ceil(rows_per);
        let pb = crate::progress::bar((n_obs * n_var) as u64, "reading");
        let mut m = CountMatrix::new(genes);
        m.indptr.reserve_exact(n_obs);
        let mut rows_done = 0usize;
        self.pipeline(
            n_chunks,
            |i| {
                let (r0, r1) = (i * rows_per, ((i + 1) * rows_per).min(n_obs));
                read_values(ds, vt, Slab::Rows(r0, r1, n_var)).map_err(self.h5.h5(&name))
            },
            |i, val: Values| {
                let r0 = i * rows_per;
                let r1 = ((i + 1) * rows_per).min(n_obs);
                debug_assert_eq!(val.len(), (r1 - r0) * n_var);
                let blocks = sub_ranges(r0, r1, |r| (r - r0) * n_var, self.chunk / 16 + 1)
                    .into_par_iter()
                    .map(|(a, b)| {
                        let mut block = Block::default();
                        let mut row = Vec::new();
                        for cell in a..b {
                            row.clear();
                            let base = (cell - r0) * n_var;
                            for j in 0..n_var {
                                let count = val.count(base + j).map_err(|found| self.bad_count(&name, cell, j, found))?;
                                let col = self.col_of[j];
                                if count != 0 && !self.is_excluded(cell, col) {
                                    row.push((col, count));
                                }
                            }
                            block.push_row(&mut row).map_err(|col| self.overflow(cell, col))?;
                        }
                        Ok(block)
                    })
                    .collect::<Vec<Result<Block>>>();
                in_order(blocks)
            },
            |blocks| {
                for b in blocks {
                    pb.inc((b.row_len.len() * n_var) as u64);
                    rows_done += b.row_len.len();
                    // Reserve for the density seen so far rather than doubling, so the buffers
                    // end close to their final size.
                    let projected = (m.indices.len() + b.indices.len()) as f64 * n_obs as f64 / rows_done as f64 * 1.02;
                    let need = (projected as usize).max(m.indices.len() + b.indices.len());
                    if need > m.indices.capacity() {
                        m.indices.reserve_exact(need - m.indices.len());
                        m.data.reserve_exact(need - m.data.len());
                    }
                    b.append_to(&mut m);
                }
                Ok(())
            },
        )?;
        pb.finish_and_clear();
        m.indices.shrink_to_fit();
        m.data.shrink_to_fit();
        Ok(m)
    }
}

/// Consecutive rows' entries, ready to append to the matrix.
#[derive(Default)]
struct Block {
    indices: Vec<u32>,
    data: Vec<u32>,
    row_len: Vec<u32>,
}

impl Block {
    /// Appends one row given as (column, count) pairs in file order; sorts them by column and
    /// sums a column listed twice (scipy's meaning of duplicate entries). Err: the column whose
    /// sum overflows.
    fn push_row(&mut self, row: &mut [(u32, u32)]) -> std::result::Result<(), u32> {
        if !row.windows(2).all(|w| w[0].0 < w[1].0) {
            row.sort_unstable_by_key(|p| p.0);
        }
        let start = self.indices.len();
        for &(c, v) in row.iter() {
            if self.indices.len() > start && *self.indices.last().unwrap() == c {
                let last = self.data.last_mut().unwrap();
                *last = last.checked_add(v).ok_or(c)?;
            } else {
                self.indices.push(c);
                self.data.push(v);
            }
        }
        self.row_len.push((self.indices.len() - start) as u32);
        Ok(())
    }

    fn append_to(self, m: &mut CountMatrix) {
        m.indices.extend_from_slice(&self.indices);
        m.data.extend_from_slice(&self.data);
        let mut end = *m.indptr.last().unwrap();
        for len in self.row_len {
            end += len as u64;
            m.indptr.push(end);
        }
    }
}

/// Sorts one row by column and sums duplicate columns in place; returns the new length or the
/// column whose sum overflows.
fn normalise_row(idx: &mut [u32], dat: &mut [u32]) -> std::result::Result<usize, u32> {
    if idx.windows(2).all(|w| w[0] < w[1]) {
        return Ok(idx.len());
    }
    let mut pairs: Vec<(u32, u32)> = idx.iter().copied().zip(dat.iter().copied()).collect();
    pairs.sort_unstable_by_key(|p| p.0);
    let mut n = 0usize;
    for (c, v) in pairs {
        if n > 0 && idx[n - 1] == c {
            dat[n - 1] = dat[n - 1].checked_add(v).ok_or(c)?;
        } else {
            idx[n] = c;
            dat[n] = v;
            n += 1;
        }
    }
    Ok(n)
}

/// Moves each row's first `lens[i]` entries together and fixes indptr.
fn compact(m: &mut CountMatrix, lens: &[u64]) {
    let n = m.n_cells();
    if (0..n).all(|i| m.indptr[i] + lens[i] == m.indptr[i + 1]) {
        return;
    }
    let mut write = 0usize;
    for (i, &len) in lens.iter().enumerate() {
        let (start, len) = (m.indptr[i] as usize, len as usize);
        m.indices.copy_within(start..start + len, write);
        m.data.copy_within(start..start + len, write);
        m.indptr[i] = write as u64;
        write += len;
    }
    m.indptr[n] = write as u64;
    m.indices.truncate(write);
    m.data.truncate(write);
    m.indices.shrink_to_fit();
    m.data.shrink_to_fit();
}

/// Splits rows into consecutive [r0, r1) chunks of at most `max_entries` entries (at least one
/// row each).
fn row_chunks(indptr: &[u64], max_entries: usize) -> Vec<(usize, usize)> {
    let n = indptr.len() - 1;
    let mut out = Vec::new();
    let mut r0 = 0;
    while r0 < n {
        let mut r1 = r0 + 1;
        while r1 < n && indptr[r1 + 1] - indptr[r0] <= max_entries as u64 {
            r1 += 1;
        }
        out.push((r0, r1));
        r0 = r1;
    }
    out
}

/// Splits rows [r0, r1) into runs of about `target` entries for the pool (`offset(r)`: where row
/// r starts, monotone).
fn sub_ranges(r0: usize, r1: usize, offset: impl Fn(usize) -> usize, target: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut a = r0;
    while a < r1 {
        let mut b = a + 1;
        while b < r1 && offset(b) - offset(a) < target {
            b += 1;
        }
        out.push((a, b));
        a = b;
    }
    out
}

fn pair_key(cell: u32, gene: u32) -> u64 {
    ((cell as u64) << 32) | gene as u64
}

/// Excluded pairs as (cell, output column) keys; a pair applies to every cell of that name.
/// Pairs naming cells or genes outside this data set cannot occur in it and are only counted in
/// the log (as the parquet reader does).
fn excluded_keys(excluded: Option<&ExcludedIds>, obs_names: &[String], genes: &[String]) -> FxHashSet<u64> {
    let mut keys = FxHashSet::default();
    let Some(excluded) = excluded.filter(|e| !e.pairs.is_empty()) else {
        return keys;
    };
    let gene_index: FxHashMap<&str, u32> = genes.iter().enumerate().map(|(i, g)| (g.as_str(), i as u32)).collect();
    let mut by_cell: FxHashMap<&str, Vec<u32>> = FxHashMap::default();
    let mut unmatched = 0usize;
    for (o, g) in &excluded.pairs {
        match gene_index.get(g.as_str()) {
            Some(&col) => by_cell.entry(o.as_str()).or_default().push(col),
            None => unmatched += 1,
        }
    }
    let mut matched_cells = FxHashSet::default();
    for (i, name) in obs_names.iter().enumerate() {
        if let Some(cols) = by_cell.get(name.as_str()) {
            matched_cells.insert(name.as_str());
            keys.extend(cols.iter().map(|&c| pair_key(i as u32, c)));
        }
    }
    unmatched += by_cell.iter().filter(|(o, _)| !matched_cells.contains(*o)).map(|(_, c)| c.len()).sum::<usize>();
    if unmatched > 0 {
        log::warn!("{unmatched} excluded (obs_id, gene) pairs name cells or genes not in this data set");
    }
    keys
}
