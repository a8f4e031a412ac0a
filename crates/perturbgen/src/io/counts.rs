//! Long (COO) count tables — Kaggle's `adata_train.parquet` and the pipeline's cached
//! `counts.parquet` — to and from the CSR [`CountMatrix`].
//!
//! Reading streams the file twice instead of collecting (cell, gene, count) triplets: the first
//! pass counts each cell's entries (only the `obs_id` column is decoded), the second scatters the
//! entries straight into CSR arrays sized exactly from the first. Peak memory is then the CSR
//! itself plus one batch per thread, where a triplet buffer would cost 12 bytes per non-zero on
//! top (at Kaggle scale ~3.6 GB). Row groups are decoded in parallel on the caller's rayon pool.
use crate::counts::CountMatrix;
use crate::error::{Error, Result};
use crate::io::arrow_util::{field_index, to_f64, to_strings};
use crate::io::cell_gene_keys::{excluded_keys, pair_key};
use crate::io::excluded::ExcludedIds;
use crate::io::obs::ObsTable;
use crate::io::parquet_util::{self, ParquetOut};
use arrow_array::cast::AsArray;
use arrow_array::types::Int32Type;
use arrow_array::{Array, ArrayRef, DictionaryArray, Float64Array, Int32Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;
use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

/// Key-value metadata holding the gene order (JSON list) in files the pipeline writes, so that
/// genes with no counts at all keep their place.
pub const GENES_KEY: &str = "perturbgen.genes";

/// Key-value metadata of the count tables the pipeline writes: the SHA-256 of their cells'
/// obs_ids in order. A reader given an obs table whose cells differ (obs and counts from two
/// stages or runs, whose missing cells would otherwise read as all-zero) refuses it.
pub const CELLS_KEY: &str = "perturbgen.cells_sha256";

/// The fingerprint stored under [`CELLS_KEY`].
pub fn cells_fingerprint(obs_ids: &[String]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for id in obs_ids {
        h.update(id.as_bytes());
        h.update([0u8]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
const BATCH_ROWS: usize = 65_536;
const UNKNOWN: u32 = u32::MAX;

/// How the gene axis of a long table is decided.
pub enum GeneOrder<'a> {
    /// This list; a gene outside it is an error.
    Given(&'a [String]),
    /// The file's own list (`perturbgen.genes` metadata) if it has one, else every gene that
    /// occurs, sorted by name.
    FromFile,
}

/// Reads a long count table into a CSR matrix whose rows follow `obs` (a cell without entries
/// gets an empty row). Extra columns are ignored; `excluded` pairs are dropped on read.
pub fn read_long_counts(
    path: &Path,
    obs: &ObsTable,
    genes: GeneOrder<'_>,
    excluded: Option<&ExcludedIds>,
) -> Result<CountMatrix> {
    let file = crate::atomic::open_input(path)?;
    let plain = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new()).map_err(|e| Error::parquet(path, e))?;
    let schema = plain.schema().clone();
    let expected = "a long count table with columns obs_id, gene, count";
    let cols = [
        field_index(path, &schema, "obs_id", expected)?,
        field_index(path, &schema, "gene", expected)?,
        field_index(path, &schema, "count", expected)?,
    ];
    let meta = dictionary_hint(plain, &schema, &cols[..2]);
    let row_groups = meta.metadata().row_groups();
    let mut rg_start = Vec::with_capacity(row_groups.len() + 1);
    rg_start.push(0u64);
    for rg in row_groups {
        rg_start.push(rg_start.last().unwrap() + rg.num_rows() as u64);
    }
    let total_rows = *rg_start.last().unwrap();
    let file_genes = match genes {
        GeneOrder::Given(_) => None,
        GeneOrder::FromFile => parquet_util::key_value(meta.metadata(), GENES_KEY)
            .map(|json| serde_json::from_str::<Vec<String>>(&json))
            .transpose()
            .map_err(|e| Error::invalid(path, format!("metadata `{GENES_KEY}` is not a JSON list of genes ({e})")))?,
    };
    if let Some(stored) = parquet_util::key_value(meta.metadata(), CELLS_KEY) {
        if stored != cells_fingerprint(&obs.obs_id) {
            return Err(Error::invalid(
                path,
                format!("was written for other cells than the {} of the obs table given with it: obs and counts from different stages or runs", obs.len()),
            ));
        }
    }
    let obs_index: FxHashMap<&str, u32> = obs.obs_id.iter().enumerate().map(|(i, s)| (s.as_str(), i as u32)).collect();
    let n_cells = obs.len();
    let pb = crate::progress::bar(total_rows * 2, "reading");
    log::info!("{}: {} entries in {} row groups", path.display(), total_rows, row_groups.len());

    // Pass 1: entries per cell (and the gene names when the file must supply them).
    let collect_genes = matches!(genes, GeneOrder::FromFile) && file_genes.is_none();
    let per_cell: Vec<AtomicU32> = (0..n_cells).map(|_| AtomicU32::new(0)).collect();
    let found_genes = std::sync::Mutex::new(FxHashSet::<String>::default());
    let pass1 = (0..row_groups.len()).into_par_iter().map(|rg| -> Result<()> {
        let mut ids = Vec::new();
        let mut obs_resolver = Resolver::new(&obs_index);
        let mut local_genes = FxHashSet::<String>::default();
        let projection: &[usize] = if collect_genes { &cols[..2] } else { &cols[..1] };
        let mut row0 = rg_start[rg];
        for batch in open_row_group(path, &meta, rg, projection)? {
            let batch = batch.map_err(|e| Error::arrow(path, e))?;
            let obs_col = batch.column_by_name("obs_id").expect("projected");
            obs_resolver.resolve(path, "obs_id", obs_col, row0, &mut ids, "an obs_id listed in the obs metadata")?;
            for &c in &ids {
                per_cell[c as usize].fetch_add(1, Ordering::Relaxed);
            }
            if collect_genes {
                let genes = batch.column_by_name("gene").expect("projected");
                collect_names(path, genes, row0, &mut local_genes)?;
            }
            row0 += batch.num_rows() as u64;
            pb.inc(batch.num_rows() as u64);
        }
        found_genes.lock().expect("no panics while held").extend(local_genes);
        Ok(())
    });
    first_error(pass1.collect())?;

    let gene_list: Vec<String> = match (genes, file_genes) {
        (GeneOrder::Given(g), _) => g.to_vec(),
        (GeneOrder::FromFile, Some(g)) => g,
        (GeneOrder::FromFile, None) => {
            let mut g: Vec<String> = found_genes.into_inner().expect("no panics while held").into_iter().collect();
            g.sort_unstable();
            g
        }
    };
    let gene_index: FxHashMap<&str, u32> = gene_list.iter().enumerate().map(|(i, s)| (s.as_str(), i as u32)).collect();
    let excluded_keys = excluded_keys(excluded, obs_index.iter().map(|(&o, &c)| (c, o)), &gene_index);

    // CSR row starts from the pass-1 counts; cursors advance as entries arrive.
    let mut indptr = Vec::with_capacity(n_cells + 1);
    indptr.push(0u64);
    for c in &per_cell {
        indptr.push(indptr.last().unwrap() + c.load(Ordering::Relaxed) as u64);
    }
    drop(per_cell);
    let slots = *indptr.last().unwrap() as usize;
    let cursor: Vec<AtomicU64> = indptr[..n_cells].iter().map(|&s| AtomicU64::new(s)).collect();
    let indices: Vec<AtomicU32> = (0..slots).map(|_| AtomicU32::new(0)).collect();
    let data: Vec<AtomicU32> = (0..slots).map(|_| AtomicU32::new(0)).collect();

    // Pass 2: validate and scatter.
    let pass2 = (0..row_groups.len()).into_par_iter().map(|rg| -> Result<()> {
        let (mut cell_ids, mut gene_ids) = (Vec::new(), Vec::new());
        let mut obs_resolver = Resolver::new(&obs_index);
        let mut gene_resolver = Resolver::new(&gene_index);
        let mut row0 = rg_start[rg];
        for batch in open_row_group(path, &meta, rg, &cols)? {
            let batch = batch.map_err(|e| Error::arrow(path, e))?;
            obs_resolver.resolve(path, "obs_id", batch.column_by_name("obs_id").expect("projected"), row0, &mut cell_ids, "an obs_id listed in the obs metadata")?;
            gene_resolver.resolve(path, "gene", batch.column_by_name("gene").expect("projected"), row0, &mut gene_ids, "a gene in the gene list")?;
            let counts = to_f64(path, "count", batch.column_by_name("count").expect("projected"))?;
            for (j, ((&cell, &gene), count)) in cell_ids.iter().zip(&gene_ids).zip(counts.iter()).enumerate() {
                let count = whole_count(path, row0 + j as u64 + 1, count)?;
                if count == 0 || excluded_keys.contains(&pair_key(cell, gene)) {
                    continue;
                }
                let pos = cursor[cell as usize].fetch_add(1, Ordering::Relaxed) as usize;
                indices[pos].store(gene, Ordering::Relaxed);
                data[pos].store(count, Ordering::Relaxed);
            }
            row0 += batch.num_rows() as u64;
            pb.inc(batch.num_rows() as u64);
        }
        Ok(())
    });
    first_error(pass2.collect())?;
    pb.finish_and_clear();

    // The atomics were only needed for the parallel scatter; these collects reuse the buffers.
    let filled: Vec<u64> = cursor.into_iter().map(AtomicU64::into_inner).collect();
    let mut m = CountMatrix {
        genes: gene_list,
        indptr,
        indices: indices.into_iter().map(AtomicU32::into_inner).collect(),
        data: data.into_iter().map(AtomicU32::into_inner).collect(),
    };
    compact(&mut m, &filled);
    sort_rows(path, &mut m, obs)?;
    Ok(m)
}

/// Reads `obs_id`/`gene` as dictionaries even when the file stores them as plain strings:
/// parquet pages are dictionary-encoded anyway, and resolving each distinct string once per
/// dictionary is far cheaper than hashing every row.
fn dictionary_hint(plain: ArrowReaderMetadata, schema: &SchemaRef, string_cols: &[usize]) -> ArrowReaderMetadata {
    let mut changed = false;
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            if string_cols.contains(&i) && matches!(f.data_type(), DataType::Utf8 | DataType::LargeUtf8) {
                changed = true;
                f.as_ref().clone().with_data_type(DataType::Dictionary(Box::new(DataType::Int32), Box::new(f.data_type().clone())))
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    if !changed {
        return plain;
    }
    let hinted = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    ArrowReaderMetadata::try_new(plain.metadata().clone(), ArrowReaderOptions::new().with_schema(hinted)).unwrap_or(plain)
}

fn open_row_group(
    path: &Path,
    meta: &ArrowReaderMetadata,
    rg: usize,
    columns: &[usize],
) -> Result<parquet::arrow::arrow_reader::ParquetRecordBatchReader> {
    let file = crate::atomic::open_input(path)?;
    let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta.clone());
    let mask = ProjectionMask::roots(builder.parquet_schema(), columns.iter().copied());
    builder
        .with_projection(mask)
        .with_row_groups(vec![rg])
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| Error::parquet(path, e))
}

/// Maps a string column's values to ids through a name → id table, resolving each distinct
/// dictionary value once (and reusing that while the reader hands out the same dictionary).
struct Resolver<'m> {
    map: &'m FxHashMap<&'m str, u32>,
    dictionary: Option<ArrayRef>,
    dictionary_ids: Vec<u32>,
}

impl<'m> Resolver<'m> {
    fn new(map: &'m FxHashMap<&'m str, u32>) -> Self {
        Self { map, dictionary: None, dictionary_ids: Vec::new() }
    }

    fn resolve(&mut self, path: &Path, column: &str, array: &ArrayRef, row0: u64, out: &mut Vec<u32>, expected: &str) -> Result<()> {
        out.clear();
        if array.logical_null_count() > 0 {
            let nulls = array.logical_nulls().expect("has nulls");
            let j = (0..array.len()).find(|&j| nulls.is_null(j)).unwrap_or(0);
            return Err(Error::bad_value(path, row0 + j as u64 + 1, column, "a value", "null"));
        }
        if let Some(dict) = array.as_any_dictionary_opt() {
            let values = dict.values();
            if !self.dictionary.as_ref().is_some_and(|d| Arc::ptr_eq(d, values)) {
                let names = to_strings(path, column, values)?;
                self.dictionary_ids = names.iter().map(|v| v.and_then(|s| self.map.get(s).copied()).unwrap_or(UNKNOWN)).collect();
                self.dictionary = Some(values.clone());
            }
            out.extend(dict.normalized_keys().into_iter().map(|k| self.dictionary_ids[k]));
        } else {
            let names = to_strings(path, column, array)?;
            let mut last: Option<(&str, u32)> = None;
            for s in names.iter() {
                let s = s.unwrap_or("");
                let id = match last {
                    Some((prev, id)) if prev == s => id,
                    _ => self.map.get(s).copied().unwrap_or(UNKNOWN),
                };
                last = Some((s, id));
                out.push(id);
            }
        }
        if let Some(j) = out.iter().position(|&id| id == UNKNOWN) {
            let names = to_strings(path, column, array)?;
            return Err(Error::bad_value(path, row0 + j as u64 + 1, column, expected, format!("`{}`", names.value(j))));
        }
        Ok(())
    }
}

fn collect_names(path: &Path, array: &ArrayRef, row0: u64, into: &mut FxHashSet<String>) -> Result<()> {
    if array.logical_null_count() > 0 {
        let nulls = array.logical_nulls().expect("has nulls");
        let j = (0..array.len()).find(|&j| nulls.is_null(j)).unwrap_or(0);
        return Err(Error::bad_value(path, row0 + j as u64 + 1, "gene", "a gene name", "null"));
    }
    let values = match array.as_any_dictionary_opt() {
        Some(dict) => to_strings(path, "gene", dict.values())?,
        None => to_strings(path, "gene", array)?,
    };
    for v in values.iter().flatten() {
        if !into.contains(v) {
            into.insert(v.to_string());
        }
    }
    Ok(())
}

/// The largest count the pipeline holds: its count cache (`counts.parquet`) stores int32.
pub const MAX_COUNT: u32 = i32::MAX as u32;

/// What a count must be, as error messages say it.
pub const COUNT_EXPECTED: &str = "a whole non-negative count below 2^31 (the pipeline stores int32 counts)";

/// A count must be a whole, non-negative number that fits the int32 cache.
fn whole_count(path: &Path, row: u64, value: Option<f64>) -> Result<u32> {
    match value {
        Some(v) if v >= 0.0 && v.fract() == 0.0 && v <= MAX_COUNT as f64 => Ok(v as u32),
        Some(v) => Err(Error::bad_value(path, row, "count", COUNT_EXPECTED, format!("{v}"))),
        None => Err(Error::bad_value(path, row, "count", COUNT_EXPECTED, "null")),
    }
}

/// Closes the gaps left by skipped entries (zeros, excluded pairs): `filled[i]` is where row
/// i's cursor stopped.
fn compact(m: &mut CountMatrix, filled: &[u64]) {
    let n = m.n_cells();
    if (0..n).all(|i| filled[i] == m.indptr[i + 1]) {
        return;
    }
    let mut write = 0usize;
    #[allow(clippy::needless_range_loop)] // i indexes indptr and filled alike
    for i in 0..n {
        let (start, end) = (m.indptr[i] as usize, filled[i] as usize);
        m.indices.copy_within(start..end, write);
        m.data.copy_within(start..end, write);
        m.indptr[i] = write as u64;
        write += end - start;
    }
    m.indptr[n] = write as u64;
    m.indices.truncate(write);
    m.data.truncate(write);
    m.indices.shrink_to_fit();
    m.data.shrink_to_fit();
}

/// Puts each row's genes in increasing order (entries arrive in file order, possibly from
/// several row groups at once) and refuses a gene listed twice for one cell.
fn sort_rows(path: &Path, m: &mut CountMatrix, obs: &ObsTable) -> Result<()> {
    let mut rows: Vec<(&mut [u32], &mut [u32])> = Vec::with_capacity(m.n_cells());
    let (mut idx, mut dat) = (m.indices.as_mut_slice(), m.data.as_mut_slice());
    for w in m.indptr.windows(2) {
        let len = (w[1] - w[0]) as usize;
        let (a, rest_i) = idx.split_at_mut(len);
        let (b, rest_d) = dat.split_at_mut(len);
        rows.push((a, b));
        idx = rest_i;
        dat = rest_d;
    }
    let dup = rows
        .par_iter_mut()
        .enumerate()
        .map(|(cell, (idx, dat))| {
            if idx.windows(2).all(|w| w[0] < w[1]) {
                return None;
            }
            let mut pairs: Vec<(u32, u32)> = idx.iter().copied().zip(dat.iter().copied()).collect();
            pairs.sort_unstable();
            for (k, (g, c)) in pairs.iter().enumerate() {
                idx[k] = *g;
                dat[k] = *c;
            }
            idx.windows(2).find(|w| w[0] == w[1]).map(|w| (cell, w[0]))
        })
        .find_first(|d| d.is_some())
        .flatten();
    if let Some((cell, gene)) = dup {
        return Err(Error::invalid(
            path,
            format!("cell `{}` lists gene `{}` more than once (expected one row per (obs_id, gene))", obs.obs_id[cell], m.genes[gene as usize]),
        ));
    }
    Ok(())
}

fn first_error(results: Vec<Result<()>>) -> Result<()> {
    results.into_iter().collect()
}

/// The type of the `count` column written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountType {
    /// `int32`: the pipeline's cache.
    Int32,
    /// `float64` holding whole numbers, plus `normalized_count`: Kaggle's `adata_train.parquet`.
    KaggleFloat,
}

/// Streams cells into a long count table. Strings are dictionary-encoded (pandas reads them
/// as `category`); the gene order goes into the file's metadata.
pub struct LongCountsWriter {
    out: ParquetOut,
    schema: SchemaRef,
    genes: ArrayRef,
    count_type: CountType,
}

impl LongCountsWriter {
    pub fn create(path: &Path, genes: &[String], count_type: CountType) -> Result<Self> {
        Self::create_with_metadata(path, genes, count_type, Vec::new())
    }

    /// Like [`LongCountsWriter::create`], with more key-value metadata.
    pub fn create_with_metadata(path: &Path, genes: &[String], count_type: CountType, mut metadata: Vec<(String, String)>) -> Result<Self> {
        let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        let mut fields = vec![Field::new("obs_id", dict.clone(), false), Field::new("gene", dict, false)];
        match count_type {
            CountType::Int32 => fields.push(Field::new("count", DataType::Int32, false)),
            CountType::KaggleFloat => {
                fields.push(Field::new("count", DataType::Float64, false));
                fields.push(Field::new("normalized_count", DataType::Float64, false));
            }
        }
        let schema = Arc::new(Schema::new(fields));
        let genes_json = serde_json::to_string(genes).expect("strings serialise");
        metadata.insert(0, (GENES_KEY.to_string(), genes_json));
        let out = ParquetOut::create(path, schema.clone(), metadata)?;
        Ok(Self { out, schema, genes: Arc::new(StringArray::from_iter_values(genes)), count_type })
    }

    /// Writes the cells `rows` of `m` under the ids `obs_ids` (same length).
    pub fn write_cells(&mut self, m: &CountMatrix, rows: std::ops::Range<usize>, obs_ids: &[String]) -> Result<()> {
        let ids = &obs_ids[rows.clone()];
        let nnz = (m.indptr[rows.end] - m.indptr[rows.start]) as usize;
        let mut cell_keys = Vec::with_capacity(nnz);
        let mut gene_keys = Vec::with_capacity(nnz);
        let mut counts = Vec::with_capacity(nnz);
        let mut normalized = Vec::with_capacity(if self.count_type == CountType::KaggleFloat { nnz } else { 0 });
        for (k, i) in rows.enumerate() {
            let (idx, dat) = m.row(i);
            cell_keys.extend(std::iter::repeat_n(k as i32, idx.len()));
            gene_keys.extend(idx.iter().map(|&g| g as i32));
            counts.extend_from_slice(dat);
            if self.count_type == CountType::KaggleFloat {
                // scanpy's normalize_total(target_sum=1e4) followed by log1p.
                let total: u64 = dat.iter().map(|&c| c as u64).sum();
                normalized.extend(dat.iter().map(|&c| (c as f64 / total as f64 * 1e4).ln_1p()));
            }
        }
        let obs_dict = DictionaryArray::<Int32Type>::try_new(
            Int32Array::from(cell_keys),
            Arc::new(StringArray::from_iter_values(ids.iter())),
        )
        .expect("keys index the chunk's cells");
        let gene_dict = DictionaryArray::<Int32Type>::try_new(Int32Array::from(gene_keys), self.genes.clone()).expect("gene keys index the gene list");
        let mut columns: Vec<ArrayRef> = vec![Arc::new(obs_dict), Arc::new(gene_dict)];
        match self.count_type {
            CountType::Int32 => columns.push(Arc::new(Int32Array::from_iter_values(counts.iter().map(|&c| c as i32)))),
            CountType::KaggleFloat => {
                columns.push(Arc::new(Float64Array::from_iter_values(counts.iter().map(|&c| c as f64))));
                columns.push(Arc::new(Float64Array::from(normalized)));
            }
        }
        let batch = RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| Error::arrow(self.out_path(), e))?;
        self.out.write(&batch)
    }

    fn out_path(&self) -> &Path {
        self.out.path()
    }

    pub fn finish(self) -> Result<()> {
        self.out.finish()
    }
}

/// Writes a whole matrix as a long table, rows in matrix order.
pub fn write_long_counts(path: &Path, m: &CountMatrix, obs_ids: &[String], count_type: CountType) -> Result<()> {
    let mut w = LongCountsWriter::create_with_metadata(path, &m.genes, count_type, vec![(CELLS_KEY.to_string(), cells_fingerprint(obs_ids))])?;
    let mut start = 0;
    while start < m.n_cells() {
        // About a million entries per batch.
        let mut end = start + 1;
        while end < m.n_cells() && m.indptr[end] - m.indptr[start] < 1 << 20 {
            end += 1;
        }
        w.write_cells(m, start..end, obs_ids)?;
        start = end;
    }
    w.finish()
}

/// The parquet key-value metadata of a file, for tests and tools.
pub fn file_metadata(path: &Path, key: &str) -> Result<Option<String>> {
    Ok(parquet_util::key_value(parquet_util::open(path)?.metadata(), key))
}
