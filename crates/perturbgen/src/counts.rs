//! The cells × genes count matrix in compressed sparse row (CSR) form: most genes are zero in
//! most cells, so only non-zeros are kept (scipy's `csr_matrix` layout, counts as `u32`).

/// Integer counts, one row per cell (in obs order), columns in `genes` order. Within a row the
/// gene indices are strictly increasing.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CountMatrix {
    pub genes: Vec<String>,
    pub indptr: Vec<u64>,
    pub indices: Vec<u32>,
    pub data: Vec<u32>,
}

impl CountMatrix {
    /// An empty matrix over `genes` to which rows are appended.
    pub fn new(genes: Vec<String>) -> Self {
        Self { genes, indptr: vec![0], indices: Vec::new(), data: Vec::new() }
    }

    pub fn n_cells(&self) -> usize {
        self.indptr.len() - 1
    }

    pub fn n_genes(&self) -> usize {
        self.genes.len()
    }

    pub fn nnz(&self) -> usize {
        self.indices.len()
    }

    /// The gene indices and counts of cell `i`.
    pub fn row(&self, i: usize) -> (&[u32], &[u32]) {
        let (a, b) = (self.indptr[i] as usize, self.indptr[i + 1] as usize);
        (&self.indices[a..b], &self.data[a..b])
    }

    /// Appends a row; `indices` must be strictly increasing and below `n_genes`.
    pub fn push_row(&mut self, indices: &[u32], data: &[u32]) {
        debug_assert_eq!(indices.len(), data.len());
        debug_assert!(indices.windows(2).all(|w| w[0] < w[1]));
        self.indices.extend_from_slice(indices);
        self.data.extend_from_slice(data);
        self.indptr.push(self.indices.len() as u64);
    }

    /// Total count of each cell.
    pub fn cell_totals(&self) -> Vec<u64> {
        (0..self.n_cells()).map(|i| self.row(i).1.iter().map(|&c| c as u64).sum()).collect()
    }

    /// Largest count of each cell (0 for an empty cell).
    pub fn cell_max(&self) -> Vec<u32> {
        (0..self.n_cells()).map(|i| self.row(i).1.iter().copied().max().unwrap_or(0)).collect()
    }

    /// Number of non-zero genes of each cell.
    pub fn cell_nnz(&self) -> Vec<u64> {
        self.indptr.windows(2).map(|w| w[1] - w[0]).collect()
    }

    /// The rows `rows`, in that order.
    pub fn take_rows(&self, rows: &[usize]) -> Self {
        let mut out = CountMatrix::new(self.genes.clone());
        let nnz: usize = rows.iter().map(|&r| (self.indptr[r + 1] - self.indptr[r]) as usize).sum();
        out.indices.reserve_exact(nnz);
        out.data.reserve_exact(nnz);
        for &r in rows {
            let (i, d) = self.row(r);
            out.push_row(i, d);
        }
        out
    }

    /// Dense counts of cell `i` (for tests and small data).
    pub fn dense_row(&self, i: usize) -> Vec<u32> {
        let mut out = vec![0; self.n_genes()];
        let (idx, d) = self.row(i);
        for (&g, &c) in idx.iter().zip(d) {
            out[g as usize] = c;
        }
        out
    }

    /// Heap bytes of the three CSR arrays (what the ingest memory budget is measured against).
    pub fn heap_bytes(&self) -> usize {
        self.indptr.capacity() * 8
            + self.indices.capacity() * 4
            + self.data.capacity() * 4
            + self.genes.iter().map(|g| g.capacity() + std::mem::size_of::<String>()).sum::<usize>()
    }
}
