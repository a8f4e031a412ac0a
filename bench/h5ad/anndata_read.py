"""The Python side of the h5ad ingest benchmark: what a scanpy user does, anndata.read_h5ad and
the counts as a scipy CSR (int32), plus a checksum to compare with pgen-ingest's matrix."""
import sys
import time

import anndata
import numpy as np
from scipy import sparse

t = time.perf_counter()
ad = anndata.read_h5ad(sys.argv[1])
X = sparse.csr_matrix(ad.X)
secs = time.perf_counter() - t
print(f'{{"seconds": {secs:.3f}, "cells": {X.shape[0]}, "genes": {X.shape[1]}, "nnz": {X.nnz}, '
      f'"sum": {int(X.data.astype(np.int64).sum())}}}')
