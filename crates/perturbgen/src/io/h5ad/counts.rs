//! The streamed count readers: CSR, CSC and dense matrices read chunk by chunk into the CSR [`CountMatrix`].
use super::csr::{compact, normalise_row, row_chunks, sub_ranges};
use super::encoding::{read_all, H5};
use crate::counts::CountMatrix;
use crate::error::{Error, Result};
use crate::io::cell_gene_keys::pair_key;
use crate::io::counts::{COUNT_EXPECTED, MAX_COUNT};
use hdf5_metno as hdf5;
use hdf5::types::TypeDescriptor;
use hdf5::{Dataset, Group, H5Type, Hyperslab, SliceOrIndex};
use rayon::prelude::*;
use rustc_hash::FxHashSet;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

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
            Values::Int(v) => u32::try_from(v[k]).ok().filter(|&c| c <= MAX_COUNT).ok_or_else(|| v[k].to_string()),
            Values::UInt(v) => u32::try_from(v[k]).ok().filter(|&c| c <= MAX_COUNT).ok_or_else(|| v[k].to_string()),
            Values::Float(v) => {
                let x = v[k];
                if x >= 0.0 && x.fract() == 0.0 && x <= MAX_COUNT as f64 {
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
pub(super) struct Ctx<'a> {
    pub(super) h5: &'a H5<'a>,
    pub(super) name: &'a str,
    pub(super) obs_names: &'a [String],
    pub(super) var_names: &'a [String],
    /// File gene j → output column.
    pub(super) col_of: &'a [u32],
    pub(super) excluded: &'a FxHashSet<u64>,
    pub(super) chunk: usize,
}

impl Ctx<'_> {
    fn n_obs(&self) -> usize {
        self.obs_names.len()
    }

    pub(super) fn check_shape(&self, (rows, cols): (usize, usize)) -> Result<()> {
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
            "`{dataset}`: cell `{}`, gene `{}`: expected {COUNT_EXPECTED}, found {found}",
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

    pub(super) fn read_csr(&self, group: &Group, genes: Vec<String>) -> Result<CountMatrix> {
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

    pub(super) fn read_csc(&self, group: &Group, genes: Vec<String>) -> Result<CountMatrix> {
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

    pub(super) fn read_dense(&self, ds: &Dataset, genes: Vec<String>) -> Result<CountMatrix> {
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
