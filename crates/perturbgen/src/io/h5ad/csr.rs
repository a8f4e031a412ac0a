//! CSR helpers: sorting a row and summing duplicates, closing gaps, splitting rows into chunks and runs.
use crate::counts::CountMatrix;

/// Sorts one row by column and sums duplicate columns in place; returns the new length or the
/// column whose sum overflows.
pub(super) fn normalise_row(idx: &mut [u32], dat: &mut [u32]) -> std::result::Result<usize, u32> {
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
pub(super) fn compact(m: &mut CountMatrix, lens: &[u64]) {
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
pub(super) fn row_chunks(indptr: &[u64], max_entries: usize) -> Vec<(usize, usize)> {
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
pub(super) fn sub_ranges(r0: usize, r1: usize, offset: impl Fn(usize) -> usize, target: usize) -> Vec<(usize, usize)> {
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
