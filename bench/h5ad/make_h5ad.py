"""Writes a Kaggle-scale .h5ad from a simulated adata_train.parquet + adata_obs_meta.csv:
counts in X as CSR int32 (cells in obs order, genes in genes.txt order), obs with the string
columns categorical. Reads the parquet one row group at a time, so the peak is about the COO
arrays plus the CSR (a few GiB at Kaggle scale). Usage: make_h5ad.py DATA_DIR OUT.h5ad"""
import sys

import anndata
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from scipy import sparse

data, out = sys.argv[1], sys.argv[2]
obs = pd.read_csv(f"{data}/adata_obs_meta.csv", dtype={"obs_id": str})
genes = open(f"{data}/genes.txt").read().split()
cell_index = pd.Index(obs["obs_id"])
gene_index = pd.Index(genes)
f = pq.ParquetFile(f"{data}/adata_train.parquet")
rows, cols, vals = [], [], []
for g in range(f.num_row_groups):
    t = f.read_row_group(g, columns=["obs_id", "gene", "count"])
    rows.append(cell_index.get_indexer(t.column("obs_id").to_pandas().astype(str)).astype(np.int32))
    cols.append(gene_index.get_indexer(t.column("gene").to_pandas().astype(str)).astype(np.int32))
    vals.append(t.column("count").to_numpy().astype(np.int32))
rows, cols, vals = (np.concatenate(x) for x in (rows, cols, vals))
assert (rows >= 0).all() and (cols >= 0).all()
X = sparse.csr_matrix((vals, (rows, cols)), shape=(len(obs), len(genes)), dtype=np.int32)
del rows, cols, vals
meta = obs.drop(columns=["obs_id"])
for c in meta.columns:
    if not pd.api.types.is_numeric_dtype(meta[c]) and not pd.api.types.is_bool_dtype(meta[c]):
        v = meta[c].astype(object).to_numpy()
        meta[c] = pd.Categorical(v, categories=pd.Index(sorted(set(v)), dtype=object))
meta.index = pd.Index(obs["obs_id"].to_numpy(dtype=object), dtype=object)
anndata.AnnData(X=X, obs=meta, var=pd.DataFrame(index=pd.Index(genes, dtype=object))).write_h5ad(out)
print(f"{out}: {X.shape[0]} cells x {X.shape[1]} genes, {X.nnz} non-zeros")
