#!/usr/bin/env python3
"""Checks that pgen-ingest and the pandas baseline built the same matrix.

Streams the Rust cache (`counts.parquet`, a long table: obs_id, gene, count) batch by batch —
never holding the whole matrix — and compares with the statistics `pandas_ingest.py --verify`
saved: non-zeros, total count, every cell's total and number of non-zeros, every gene's total,
and an order-independent checksum of all (cell, gene, count) triples (cells by position in the
obs table, genes by name). Also checks the Rust summary JSON (cells, genes, non-zeros).
Exit status 0 if everything matches, 1 otherwise.
"""
import argparse
import json
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pandas_ingest import mix_sum


def positions(array, index, what):
    """Positions in `index` of a (dictionary or plain) string array."""
    if pa.types.is_dictionary(array.type):
        lut = index.get_indexer(array.dictionary.to_pandas())
        pos = lut[array.indices.to_numpy(zero_copy_only=False)]
    else:
        pos = index.get_indexer(array.to_pandas())
    if (pos < 0).any():
        sys.exit(f"error: the Rust cache has an unknown {what}")
    return pos.astype(np.uint64)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rust-counts", required=True, help="counts.parquet written by pgen-ingest")
    p.add_argument("--rust-summary", required=True)
    p.add_argument("--pandas-verify", required=True, help=".npz written by pandas_ingest.py --verify")
    p.add_argument("--out", help="write the result as JSON here")
    args = p.parse_args()

    ref = np.load(args.pandas_verify, allow_pickle=False)
    obs_index = pd.Index(ref["obs_id"])
    gene_index = pd.Index(ref["genes"])
    n_cells, n_genes = len(obs_index), len(gene_index)
    cell_totals = np.zeros(n_cells, np.int64)
    cell_nnz = np.zeros(n_cells, np.int64)
    gene_totals = np.zeros(n_genes, np.int64)
    checksum, nnz = 0, 0
    pf = pq.ParquetFile(args.rust_counts)
    for batch in pf.iter_batches(batch_size=1 << 20, columns=["obs_id", "gene", "count"]):
        rows = positions(batch.column("obs_id"), obs_index, "obs_id")
        genes = positions(batch.column("gene"), gene_index, "gene")
        counts = batch.column("count").to_numpy().astype(np.int64)
        ri = rows.astype(np.int64)
        cell_totals += np.bincount(ri, weights=counts, minlength=n_cells).astype(np.int64)
        cell_nnz += np.bincount(ri, minlength=n_cells)
        gene_totals += np.bincount(genes.astype(np.int64), weights=counts, minlength=n_genes).astype(np.int64)
        checksum = (checksum + int(mix_sum(rows, genes, counts.astype(np.uint64), np.uint64(n_genes)))) % 2**64
        nnz += len(counts)

    with open(args.rust_summary) as f:
        rs = json.load(f)
    checks = {
        "summary cells == pandas cells": rs["cells"] == n_cells,
        "summary genes == pandas genes": rs["genes"] == n_genes,
        "summary nonzeros == pandas nnz": rs["nonzeros"] == int(ref["nnz"]),
        "cache nnz == pandas nnz": nnz == int(ref["nnz"]),
        "total count": int(cell_totals.sum()) == int(ref["cell_totals"].sum()),
        "every cell's total": bool(np.array_equal(cell_totals, ref["cell_totals"])),
        "every cell's non-zeros": bool(np.array_equal(cell_nnz, ref["cell_nnz"])),
        "every gene's total": bool(np.array_equal(gene_totals, ref["gene_totals"])),
        "checksum of all (cell, gene, count)": checksum == int(ref["checksum"]),
    }
    result = {
        "match": all(checks.values()),
        "checks": checks,
        "cells": n_cells,
        "genes": n_genes,
        "nonzeros": nnz,
        "total_counts": int(cell_totals.sum()),
        "checksum": f"{checksum:016x}",
    }
    for k, v in checks.items():
        print(f"  {'ok  ' if v else 'FAIL'} {k}")
    print(f"matrices {'MATCH' if result['match'] else 'DIFFER'}: {n_cells} cells x {n_genes} genes, "
          f"{nnz} non-zeros, total count {result['total_counts']}, checksum {result['checksum']}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
    sys.exit(0 if result["match"] else 1)


if __name__ == "__main__":
    main()
