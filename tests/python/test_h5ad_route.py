"""The demo read from an AnnData .h5ad (written here by the `anndata` package from the
simulator's files) gives the same bytes downstream as the Kaggle parquet route: de_train,
every route's prediction and the scores. Counts once in X (CSR, int32), once in
layers['counts'] with normalised values in X."""
import shutil

import anndata
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from conftest import REPO, run
from test_de_stage import SNAKEMAKE

DEMO = """\
train: {models: []}
forest: {n_trees: 20}
"""


def write_h5ad(sim_dir, path, layer, halve=False):
    long = pd.read_parquet(sim_dir / "adata_train.parquet")
    obs = pd.read_csv(sim_dir / "adata_obs_meta.csv", dtype={"obs_id": str})
    genes = (sim_dir / "genes.txt").read_text().split()
    rows = pd.Index(obs["obs_id"]).get_indexer(long["obs_id"].astype(str))
    cols = pd.Index(genes).get_indexer(long["gene"].astype(str))
    assert (rows >= 0).all() and (cols >= 0).all()
    counts = sparse.csr_matrix((long["count"].to_numpy(np.int32), (rows, cols)), shape=(len(obs), len(genes)))
    counts.sum_duplicates()
    if halve:  # normalised-looking values where counts belong
        counts = counts.astype(np.float32) * 0.5
    # As a scanpy user's file has them: string columns categorical. Object-dtype categories and
    # index: anndata 0.12.6 cannot write pandas 3's default `str` dtype.
    meta = obs.drop(columns=["obs_id"])
    for c in meta.columns:
        if not pd.api.types.is_numeric_dtype(meta[c]) and not pd.api.types.is_bool_dtype(meta[c]):
            values = meta[c].astype(object).to_numpy()
            meta[c] = pd.Categorical(values, categories=pd.Index(sorted(set(values)), dtype=object))
    meta.index = pd.Index(obs["obs_id"].to_numpy(dtype=object), dtype=object)
    var = pd.DataFrame(index=pd.Index(genes, dtype=object))
    if layer:
        totals = np.asarray(counts.sum(axis=1)).ravel()
        normalised = sparse.csr_matrix(sparse.diags(1e4 / np.maximum(totals, 1)) @ counts)
        normalised.data = np.log1p(normalised.data).astype(np.float32)
        ad = anndata.AnnData(X=normalised, obs=meta, var=var, layers={"counts": counts})
    else:
        ad = anndata.AnnData(X=counts, obs=meta, var=var)
    ad.write_h5ad(path)


def run_workflow(tmp_path, name, extra_config=()):
    d = tmp_path / name
    d.mkdir()
    for sub in ["workflow", "config", "scripts", "envs"]:
        shutil.copytree(REPO / sub, d / sub, ignore=shutil.ignore_patterns("__pycache__"))
    (d / "demo.yaml").write_text(DEMO)
    run([SNAKEMAKE, "-c2", "--quiet", "rules", "--configfile", d / "config" / "config.yaml", d / "demo.yaml",
         "--config", f"bin_dir={REPO / 'target' / 'release'}", *extra_config], cwd=d)
    return d / "results"


COMPARED = ["de/de_train.parquet", "de/truth.parquet", "scores/scores.csv", "predictions/xgb.parquet",
            "predictions/forest.parquet", "predictions/xgb_forest.parquet", "ingest/counts.parquet"]


@pytest.fixture(scope="module")
def parquet_route(tmp_path_factory):
    return run_workflow(tmp_path_factory.mktemp("parquet_route"), "wf")


@pytest.mark.parametrize("layer", [False, True], ids=["X-csr", "layers-counts"])
def test_h5ad_route_gives_the_same_bytes(layer, parquet_route, sim_dir, tmp_path):
    h5ad = tmp_path / "demo.h5ad"
    write_h5ad(sim_dir, h5ad, layer)
    # The simulation (id_map, withheld truth cells, excluded ids, gene order) stays the
    # parquet route's: the h5ad replaces adata_train.parquet + adata_obs_meta.csv.
    results = run_workflow(tmp_path, "wf", [f"input={{h5ad: {{path: {h5ad}, counts: {'layers/counts' if layer else 'X'}}}}}"])
    for rel in COMPARED:
        assert (results / rel).read_bytes() == (parquet_route / rel).read_bytes(), rel
    # The obs table is the same values (its dictionary levels may come in another order).
    a = pd.read_parquet(results / "ingest" / "obs.parquet")
    b = pd.read_parquet(parquet_route / "ingest" / "obs.parquet")
    pd.testing.assert_frame_equal(a.astype(str), b.astype(str))


def test_h5ad_bad_inputs_are_one_line_errors(sim_dir, tmp_path):
    from test_xgb import fails
    ingest = REPO / "target" / "release" / "pgen-ingest"
    good = tmp_path / "good.h5ad"
    write_h5ad(sim_dir, good, layer=False)
    out = tmp_path / "out" / "counts.parquet"
    cmd = lambda path, *extra: [ingest, "--h5ad", path, *extra, "--out-counts", out, "--out-obs", tmp_path / "out" / "obs.parquet"]
    # Truncated file.
    trunc = tmp_path / "trunc.h5ad"
    trunc.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    fails(cmd(trunc), out, "trunc.h5ad")
    # Not HDF5 at all.
    junk = tmp_path / "junk.h5ad"
    junk.write_text("obs_id,gene,count\n")
    fails(cmd(junk), out, "junk.h5ad")
    # A layer that is not there.
    fails(cmd(good, "--h5ad-counts", "layers/counts"), out, "good.h5ad", "layers/counts")
    # A mapped obs column that is not there.
    fails(cmd(good, "--column", "cell_type=celltype"), out, "good.h5ad", "celltype")
    # Normalised (non-integer) values as counts.
    frac = tmp_path / "frac.h5ad"
    write_h5ad(sim_dir, frac, layer=False, halve=True)
    fails(cmd(frac), out, "frac.h5ad", "X")
