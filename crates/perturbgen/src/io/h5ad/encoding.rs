//! The HDF5 / AnnData encoding layer: the open file, dataframes, categoricals, string arrays, attributes and count-matrix layouts.
use super::{CountSource, H5adObs};
use crate::error::{Error, Result};
use hdf5_metno as hdf5;
use hdf5::types::{FixedAscii, FixedUnicode, FloatSize, TypeDescriptor, VarLenAscii, VarLenUnicode};
use hdf5::{Dataset, Group, H5Type, LocationType};
use std::path::Path;

/// An open file and its path, for error messages.
pub(super) struct H5<'p> {
    path: &'p Path,
    file: hdf5::File,
}

pub(super) enum Matrix {
    Dense(Dataset),
    Sparse { group: Group, csr: bool, shape: (usize, usize) },
}

impl<'p> H5<'p> {
    pub(super) fn open(path: &'p Path) -> Result<Self> {
        // A missing file is an I/O error ("No such file"), not a format problem.
        std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        let file = hdf5::File::open(path)
            .map_err(|e| Error::invalid(path, format!("not a readable HDF5/AnnData file ({})", one_line(&e))))?;
        Ok(Self { path, file })
    }

    pub(super) fn invalid(&self, message: String) -> Error {
        Error::invalid(self.path, message)
    }

    /// A read that failed inside HDF5: the file is damaged or not what it claims to be.
    pub(super) fn h5(&self, what: &str) -> impl Fn(hdf5::Error) -> Error + '_ {
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
    pub(super) fn count_source(&self, source: &CountSource) -> Result<(String, String)> {
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

    pub(super) fn matrix(&self, name: &str) -> Result<Matrix> {
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

    /// A dense float64 matrix `name` of exactly `shape` (rows × columns), row-major; any
    /// float or integer dtype is converted by HDF5.
    pub(super) fn dense_f64(&self, name: &str, shape: (usize, usize)) -> Result<Vec<f64>> {
        let ds = match self.kind(name) {
            Some(LocationType::Dataset) => self.dataset(name)?,
            Some(_) => return Err(self.invalid(format!("`{name}` is not a dense array (a sparse matrix?); expected {} × {} float64", shape.0, shape.1))),
            None => return Err(self.invalid(format!("no `{name}`"))),
        };
        let found = ds.shape();
        if found != [shape.0, shape.1] {
            return Err(self.invalid(format!("`{name}` has shape {found:?}, expected [{}, {}] (obs × var)", shape.0, shape.1)));
        }
        read_all::<f64>(&ds).map_err(self.h5(name))
    }

    /// The names in group `name` (sorted), or none where it does not exist.
    pub(super) fn members_if_any(&self, name: &str) -> Result<Vec<String>> {
        match self.kind(name) {
            Some(LocationType::Group) => self.members(name),
            _ => Ok(Vec::new()),
        }
    }

    /// The string entries of the `uns`-style dict `name`, nested dicts flattened to
    /// `outer/inner` keys, in sorted order; entries that are not strings are skipped.
    pub(super) fn string_entries(&self, name: &str) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        for member in self.members_if_any(name)? {
            let full = format!("{name}/{member}");
            match self.kind(&full) {
                Some(LocationType::Group) => {
                    for (k, v) in self.string_entries(&full)? {
                        out.push((format!("{member}/{k}"), v));
                    }
                }
                Some(LocationType::Dataset) => {
                    let ds = self.dataset(&full)?;
                    let td = ds.dtype().and_then(|t| t.to_descriptor()).map_err(self.h5(&full))?;
                    if ds.ndim() == 0 && is_string(&td) {
                        if let Some(v) = read_strings(&ds, &td).map_err(self.h5(&full))?.into_iter().next() {
                            out.push((member, v));
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// A dataframe group (`obs`, `var`, `raw/var`): its index and, if `columns`, every column.
    pub(super) fn dataframe(&self, name: &str, columns: bool) -> Result<H5adObs> {
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

fn is_string(td: &TypeDescriptor) -> bool {
    matches!(td, TypeDescriptor::VarLenUnicode | TypeDescriptor::VarLenAscii | TypeDescriptor::FixedAscii(_) | TypeDescriptor::FixedUnicode(_))
}

pub(super) fn read_all<T: H5Type>(c: &hdf5::Container) -> hdf5::Result<Vec<T>> {
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
