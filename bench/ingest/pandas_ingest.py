#!/usr/bin/env python3
"""The pandas + pyarrow + scipy baseline for `pgen-ingest`: what a notebook user does to turn
Kaggle's long `adata_train.parquet` into a cells x genes CSR matrix.

    obs   = pd.read_csv(adata_obs_meta.csv)
    df    = pd.read_parquet(adata_train.parquet, engine="pyarrow", columns=[obs_id, gene, count])
    drop the (obs_id, gene) pairs listed in adata_excluded_ids.csv
    row   = obs_id -> position in obs;  col = gene -> position in the gene order
    X     = scipy.sparse.csr_matrix((count, (row, col)), shape=(n_obs, n_genes)); X.sort_indices()

The gene order follows pgen-ingest's rule when no gene list is given: the file's own list
(parquet key-value metadata `perturbgen.genes`, written by the simulator and the pipeline) if it
has one, else every gene that occurs, sorted by name (`--gene-order sorted` forces the latter).

Only the load section (above) is timed inside the script (`load_seconds`); the whole process is
timed from outside (`/usr/bin/time -v` in run.sh). With `--verify OUT.npz` the script then also
writes per-cell / per-gene statistics and an order-independent checksum of the matrix, which
`compare.py` checks against the Rust cache. Threads: pyarrow CPU and I/O pools are set to
`--threads`; set OMP_NUM_THREADS etc. in the environment before starting (run.sh does).
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import scipy
import scipy.sparse as sp

GENES_KEY = b"perturbgen.genes"


def vm_hwm_bytes():
    """Peak resident memory so far (VmHWM), as pgen-ingest reports it."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None


def gene_order(path, df_gene, mode):
    if mode == "file":
        kv = pq.ParquetFile(path).metadata.metadata or {}
        if GENES_KEY in kv:
            return pd.Index(json.loads(kv[GENES_KEY])), "file metadata (perturbgen.genes)"
    cats = df_gene.cat.categories if isinstance(df_gene.dtype, pd.CategoricalDtype) else pd.Index(df_gene.unique())
    used = np.unique(df_gene.cat.codes) if isinstance(df_gene.dtype, pd.CategoricalDtype) else None
    names = cats[used] if used is not None else cats
    return pd.Index(np.sort(np.asarray(names, dtype=object))), "sorted by name"


def codes_into(values, order, what):
    """Positions of `values` (a categorical or strings) in the Index `order`."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        lut = order.get_indexer(values.cat.categories)
        if (lut < 0).any():
            bad = values.cat.categories[np.flatnonzero(lut < 0)[0]]
            sys.exit(f"error: {what} `{bad}` is not known")
        return lut.astype(np.int32)[values.cat.codes.to_numpy()]
    pos = order.get_indexer(values)
    if (pos < 0).any():
        sys.exit(f"error: {what} `{values.iloc[np.flatnonzero(pos < 0)[0]]}` is not known")
    return pos.astype(np.int32)


def load(args):
    obs = pd.read_csv(args.obs)
    df = pd.read_parquet(args.counts, engine="pyarrow", columns=None if args.all_columns else ["obs_id", "gene", "count"])
    obs_order = pd.Index(obs["obs_id"])
    genes, gene_source = gene_order(args.counts, df["gene"], args.gene_order)
    row = codes_into(df["obs_id"], obs_order, "obs_id")
    col = codes_into(df["gene"], genes, "gene")
    count = df["count"].to_numpy()
    del df

    keep = count != 0
    if args.excluded:
        ex = pd.read_csv(args.excluded)
        er = obs_order.get_indexer(ex["obs_id"])
        eg = genes.get_indexer(ex["gene"])
        ok = (er >= 0) & (eg >= 0)
        ex_keys = er[ok].astype(np.int64) * len(genes) + eg[ok]
        # Only entries of cells that have an excluded pair need the (cell, gene) test.
        flagged = np.zeros(len(obs_order), dtype=bool)
        flagged[er[ok]] = True
        cand = np.flatnonzero(flagged[row])
        hit = np.isin(row[cand].astype(np.int64) * len(genes) + col[cand], ex_keys)
        keep[cand[hit]] = False
    if not keep.all():
        row, col, count = row[keep], col[keep], count[keep]
    del keep

    X = sp.csr_matrix((count, (row, col)), shape=(len(obs_order), len(genes)))
    del row, col, count
    X.sort_indices()
    return obs, genes, gene_source, X


def checksum(X, chunk_rows=20_000):
    """Order-independent checksum of the (cell, gene, count) triples; same as compare.py."""
    n_genes = np.uint64(X.shape[1])
    total = 0
    for a in range(0, X.shape[0], chunk_rows):
        b = min(a + chunk_rows, X.shape[0])
        lo, hi = X.indptr[a], X.indptr[b]
        rows = np.repeat(np.arange(a, b, dtype=np.uint64), np.diff(X.indptr[a:b + 1]))
        total = (total + int(mix_sum(rows, X.indices[lo:hi].astype(np.uint64), X.data[lo:hi].astype(np.uint64), n_genes))) % 2**64
    return total


def mix_sum(rows, genes, counts, n_genes):
    with np.errstate(over="ignore"):
        x = (rows * n_genes + genes) * np.uint64(0x9E3779B97F4A7C15) + counts
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
        return x.sum(dtype=np.uint64)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--counts", required=True)
    p.add_argument("--obs", required=True)
    p.add_argument("--excluded")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--gene-order", choices=["file", "sorted"], default="file")
    p.add_argument("--all-columns", action="store_true", help="read every column (also normalized_count), as a bare pd.read_parquet(path) does")
    p.add_argument("--summary", help="summary JSON (timing, memory, sizes)")
    p.add_argument("--verify", help="write per-cell/per-gene statistics and a checksum here (.npz), after timing")
    args = p.parse_args()

    pa.set_cpu_count(args.threads)
    pa.set_io_thread_count(args.threads)

    t0 = time.perf_counter()
    obs, genes, gene_source, X = load(args)
    load_seconds = time.perf_counter() - t0
    peak = vm_hwm_bytes()

    csr_bytes = X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
    obs_bytes = int(obs.memory_usage(index=True, deep=True).sum())
    summary = {
        "cells": X.shape[0],
        "genes": X.shape[1],
        "nonzeros": int(X.nnz),
        "total_counts": float(X.data.sum(dtype=np.float64)),
        "gene_order": gene_source,
        "dtypes": {"data": str(X.data.dtype), "indices": str(X.indices.dtype), "indptr": str(X.indptr.dtype)},
        "csr_bytes": int(csr_bytes),
        "obs_bytes": obs_bytes,
        "peak_rss_bytes_after_load": peak,
        "load_seconds": load_seconds,
        "threads": args.threads,
        "all_columns": args.all_columns,
        "versions": {"python": sys.version.split()[0], "pandas": pd.__version__, "pyarrow": pa.__version__,
                     "numpy": np.__version__, "scipy": scipy.__version__},
    }
    print(f"loaded {X.shape[0]} cells x {X.shape[1]} genes, {X.nnz} non-zeros in {load_seconds:.1f} s "
          f"(CSR {csr_bytes / 2**20:.1f} MiB, obs {obs_bytes / 2**20:.1f} MiB, peak RSS {peak / 2**20:.1f} MiB)",
          file=sys.stderr)
    if args.summary:
        with open(args.summary, "w") as f:
            json.dump(summary, f, indent=2)
    if args.verify:
        if not X.has_canonical_format:
            sys.exit("error: CSR is not canonical (unsorted or duplicate entries)")
        frac = X.data != np.round(X.data)
        if frac.any():
            sys.exit("error: non-whole counts")
        np.savez(
            args.verify,
            cell_totals=np.asarray(X.sum(axis=1)).ravel().astype(np.int64),
            cell_nnz=np.diff(X.indptr).astype(np.int64),
            gene_totals=np.asarray(X.sum(axis=0)).ravel().astype(np.int64),
            genes=np.asarray(genes, dtype=object).astype(str),
            obs_id=obs["obs_id"].to_numpy().astype(str),
            checksum=np.uint64(checksum(X)),
            nnz=np.int64(X.nnz),
        )


if __name__ == "__main__":
    main()
