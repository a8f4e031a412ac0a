"""Writes the .h5ad fixtures of crates/perturbgen/tests/h5ad.rs with the real `anndata` package.

Usage: h5ad_fixtures.py OUT_DIR

For every fixture `NAME.h5ad` it also writes `NAME.json`, the truth the Rust reader is checked
against, taken from anndata/scipy/pandas (never from our reader):
  obs_names, columns ([name, [text, ...]] in obs column order, values as text by the rules of
  perturbgen::io::h5ad::H5adObs), var_names (of the count source), counts (dense, cells x genes,
  of the count source) and, for the bad fixtures, `bad` (the dataset path, cell and gene of the
  offending value).
Not a pytest module (no test_ prefix): the Rust test runs it.
"""

import importlib.metadata
import json
import os
import shutil
import sys

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

OUT = sys.argv[1]
os.makedirs(OUT, exist_ok=True)
RNG = np.random.default_rng(7)


def text(v, dtype=None):
    """One value as text: what H5adObs promises (NaN/NA -> "", floats like Rust's `{}`)."""
    if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "True" if v else "False"
    if isinstance(v, (np.floating, float)):
        if np.isnan(v):
            return ""
        # Shortest round-trip digits, never an exponent: Rust's Display for f32/f64.
        return np.format_float_positional(v, trim="-")
    if isinstance(v, (np.integer, int)):
        return str(int(v))
    return str(v)


def obs_truth(obs):
    cols = []
    for name in obs.columns:
        s = obs[name]
        if isinstance(s.dtype, pd.CategoricalDtype):
            vals = [("" if pd.isna(v) else text(v)) for v in s.tolist()]
        elif s.dtype.kind == "f":
            vals = [text(v) for v in s.to_numpy()]  # keeps float32 as float32
        else:
            vals = [text(v) for v in s.tolist()]
        cols.append([str(name), vals])
    return [str(i) for i in obs.index], cols


def dump(name, path, source="X", bad=None):
    """Truth of `path` read back with anndata: counts of `source` (X, layers/<k>, raw/X)."""
    a = ad.read_h5ad(path)
    if source == "X":
        m, var = a.X, a.var_names
    elif source == "raw/X":
        m, var = a.raw.X, a.raw.var_names
    else:
        m, var = a.layers[source.split("/", 1)[1]], a.var_names
    dense = m.toarray() if sp.issparse(m) else np.asarray(m)
    obs_names, cols = obs_truth(a.obs)
    truth = {
        "obs_names": obs_names,
        "columns": cols,
        "var_names": [str(v) for v in var],
        "counts": None if bad else [[int(x) for x in row] for row in dense],
    }
    if bad:
        truth["bad"] = bad
    with open(os.path.join(OUT, name + ".json"), "w") as f:
        json.dump(truth, f)


def categorical(values, categories=None):
    """A categorical with object-dtype categories: pandas >= 3 would infer its `str` dtype, which
    anndata versions that allow pandas 3 cannot write."""
    if categories is None:
        categories = sorted({v for v in values if v is not None})
    return pd.Categorical(values, categories=pd.Index(categories, dtype=object))


def obs_frame(n):
    """Categorical (with NaN and an unused category), string, int, float (NaN), bool columns."""
    cats = categorical(
        [["T cells", "B cells", "NK cells"][i % 3] if i % 5 != 4 else None for i in range(n)],
        ["B cells", "NK cells", "T cells", "unused"],
    )
    df = pd.DataFrame(
        {
            "cell_type": cats,
            "col": np.arange(n, dtype=np.int64) * 3 - 5,
            "dose_uM": np.array([0.1 * i if i % 3 else np.nan for i in range(n)], dtype=np.float64),
            "frac32": np.array([i / 8 + 0.1 for i in range(n)], dtype=np.float32),
            "control": np.array([i % 2 == 0 for i in range(n)]),
            "plate": categorical([f"plate_{i % 2}" for i in range(n)]),
        },
        index=pd.Index([f"cell_{i:03d}" for i in range(n)], dtype=object),
    )
    # Plain (object) strings, as pandas < 3 makes them: anndata writes them as `string-array`
    # (all values distinct, so anndata does not turn them into a categorical on write).
    # pandas >= 3 infers its `str` dtype in the constructor, hence the explicit object Series.
    df.insert(1, "barcode", pd.Series([f"AC{i:04d}GT" for i in range(n)], dtype=object, index=df.index))
    # A repeated string column, as anndata's write (strings_to_categoricals) would store it.
    df.insert(2, "sm_name", categorical([f"drug {i % 4}" for i in range(n)]))
    return df


def counts(n, g, density=0.4):
    m = RNG.poisson(3.0, size=(n, g)) * (RNG.random((n, g)) < density)
    m[1, :] = 0  # an empty cell
    return m


def var_frame(g, prefix="gene"):
    return pd.DataFrame(index=pd.Index([f"{prefix}{j:02d}" for j in range(g)], dtype=object))


def write(name, adata, source="X", bad=None, **kw):
    path = os.path.join(OUT, name + ".h5ad")
    # Categoricals are made explicitly above (see `categorical`).
    adata.write_h5ad(path, convert_strings_to_categoricals=False, **kw)
    dump(name, path, source, bad)
    return path


N, G = 23, 9

# CSR int32 in X (one stored explicit zero), obs with every column kind.
m = counts(N, G)
csr = sp.csr_matrix(m.astype(np.int32))
csr.data[0] = 0  # an explicitly stored zero: must not become an entry
a = ad.AnnData(X=csr, obs=obs_frame(N), var=var_frame(G))
write("csr_int32", a)

# CSR float32 holding whole numbers, gzip-compressed and stored in small HDF5 chunks.
a = ad.AnnData(X=sp.csr_matrix(counts(N, G).astype(np.float32)), obs=obs_frame(N), var=var_frame(G))
write("csr_float32", a, compression="gzip", compression_opts=4)

# CSC int64.
a = ad.AnnData(X=sp.csc_matrix(counts(N, G).astype(np.int64)), obs=obs_frame(N), var=var_frame(G))
write("csc_int64", a)

# Dense uint16 and dense float64.
a = ad.AnnData(X=counts(N, G).astype(np.uint16), obs=obs_frame(N), var=var_frame(G))
write("dense_uint16", a)
a = ad.AnnData(X=counts(N, G).astype(np.float64), obs=obs_frame(N), var=var_frame(G))
write("dense_float64", a)

# Normalised floats in X, raw counts in layers['counts'].
m = counts(N, G)
norm = np.log1p(m / np.maximum(m.sum(1, keepdims=True), 1) * 1e4)
a = ad.AnnData(X=sp.csr_matrix(norm), obs=obs_frame(N), var=var_frame(G))
a.layers["counts"] = sp.csr_matrix(m.astype(np.int32))
a.layers["spliced"] = sp.csr_matrix(m.astype(np.int32))
write("layers", a, source="layers/counts")

# raw/X with more genes than X (X is an HVG subset of normalised values).
G_RAW = 12
m = counts(N, G_RAW)
full = ad.AnnData(X=sp.csr_matrix(m.astype(np.float32)), obs=obs_frame(N), var=var_frame(G_RAW, "raw"))
full.raw = full.copy()
sub = full[:, [0, 3, 5, 7]].copy()
sub.X = sp.csr_matrix(np.log1p(sub.X.toarray()))
write("raw", sub, source="raw/X")

# Pandas nullable dtypes: nullable-string-array, nullable-integer, nullable-boolean encodings.
ad.settings.allow_write_nullable_strings = True
obs = obs_frame(N)
obs["s_nullable"] = pd.array([f"s{i}" if i % 4 else None for i in range(N)], dtype="string[python]")
obs["i_nullable"] = pd.array([i if i % 3 else None for i in range(N)], dtype="Int32")
obs["b_nullable"] = pd.array([bool(i % 2) if i % 5 else None for i in range(N)], dtype="boolean")
obs["cat_int"] = pd.Categorical([10 * (i % 3) for i in range(N)])
obs.index = pd.Index([f"cell_{i:03d}" for i in range(N)], dtype="string[python]", name="obs_id")
a = ad.AnnData(X=sp.csr_matrix(counts(N, G).astype(np.int32)), obs=obs, var=var_frame(G))
write("nullable", a)
ad.settings.allow_write_nullable_strings = False

# anndata < 0.8 layout (as 0.7 wrote it, by hand with h5py): categoricals as integer codes with
# a `categories` object reference into obs/__categories, strings without encoding attributes,
# X with the h5sparse_* attributes. The truth is what the current anndata reads from it.
legacy = os.path.join(OUT, "legacy.h5ad")
m = counts(N, G)
lcsr = sp.csr_matrix(m.astype(np.float32))
with h5py.File(legacy, "w") as f:
    str_t = h5py.special_dtype(vlen=str)
    x = f.create_group("X")
    x.attrs["encoding-type"] = "csr_matrix"
    x.attrs["encoding-version"] = "0.1.0"
    x.attrs["shape"] = np.array(lcsr.shape)
    x.attrs["h5sparse_format"] = "csr"
    x.attrs["h5sparse_shape"] = np.array(lcsr.shape)
    x["data"], x["indices"], x["indptr"] = lcsr.data, lcsr.indices, lcsr.indptr
    for grp, names, cols in (
        ("obs", [f"cell_{i:03d}" for i in range(N)], ["cell_type", "n_genes", "batch"]),
        ("var", [f"gene{j:02d}" for j in range(G)], []),
    ):
        g = f.create_group(grp)
        g.attrs["encoding-type"] = "dataframe"
        g.attrs["encoding-version"] = "0.1.0"
        g.attrs["_index"] = "index"
        g.attrs["column-order"] = np.array(cols, dtype=object) if cols else np.array([], dtype="float64")
        g.create_dataset("index", data=np.array(names, dtype=object), dtype=str_t)
        if grp == "obs":
            cg = g.create_group("__categories")
            cg.create_dataset("cell_type", data=np.array(["B", "T"], dtype=object), dtype=str_t)
            g.create_dataset("cell_type", data=np.array([i % 2 for i in range(N)], dtype=np.int8))
            g["cell_type"].attrs["categories"] = cg["cell_type"].ref
            g.create_dataset("n_genes", data=(m > 0).sum(1).astype(np.int32))
            g.create_dataset("batch", data=np.array([f"b{i % 3}" for i in range(N)], dtype=object), dtype=str_t)
    f.attrs["encoding-type"] = "anndata"
    f.attrs["encoding-version"] = "0.1.0"
dump("legacy", legacy)

# ---- bad inputs -------------------------------------------------------------------------------
for label, value in (("fractional", 2.5), ("negative", -3.0), ("nan", np.nan)):
    m = counts(N, G).astype(np.float32)
    m[6, 4] = value
    a = ad.AnnData(X=sp.csr_matrix(m), obs=obs_frame(N), var=var_frame(G))
    write(f"bad_{label}", a, bad={"dataset": "X/data", "cell": "cell_006", "gene": "gene04"})
m = counts(N, G).astype(np.float64)
m[8, 2] = 0.25
a = ad.AnnData(X=sp.csc_matrix(m), obs=obs_frame(N), var=var_frame(G))
write("bad_csc", a, bad={"dataset": "X/data", "cell": "cell_008", "gene": "gene02"})
m = counts(N, G).astype(np.float64)
m[10, 7] = 1.5
a = ad.AnnData(X=m, obs=obs_frame(N), var=var_frame(G))
write("bad_dense", a, bad={"dataset": "X", "cell": "cell_010", "gene": "gene07"})

# obs shorter than X: rewrite obs of a copy with 20 cells.
short = os.path.join(OUT, "bad_obs_len.h5ad")
shutil.copy(os.path.join(OUT, "csr_int32.h5ad"), short)
with h5py.File(short, "a") as f:
    del f["obs"]
    ad.io.write_elem(f, "obs", obs_frame(20))

# Not HDF5 at all, and a truncated HDF5 file.
with open(os.path.join(OUT, "not_hdf5.h5ad"), "w") as f:
    f.write("obs_id,gene,count\nc1,g1,3\n")
with open(os.path.join(OUT, "csr_int32.h5ad"), "rb") as f:
    whole = f.read()
with open(os.path.join(OUT, "truncated.h5ad"), "wb") as f:
    f.write(whole[: len(whole) // 2])

with open(os.path.join(OUT, "versions.json"), "w") as f:
    json.dump({p: importlib.metadata.version(p) for p in ("anndata", "h5py", "pandas", "scipy")}, f)
print("ok", OUT)
