"""An AnnData study as a scanpy user has it — obs with only the cell type, the condition and the
donor, counts in X — run through the whole DAG with the generative models on, from the
template config/study.yaml; and the AnnData the workflow writes back:

* ingest defaults plate_name to the donor and well to the condition, and says so in one line;
* every route's prediction as .h5ad (results/predictions/<route>.h5ad), read by anndata and by
  scanpy: obs/var/X equal the parquet; the layers of forest and the generative routes' run 0
  are limma's (X is
  sign(logFC)·−log10 P.Value of them; BH by hand), uns names the route and its settings;
* the generated cells as .h5ad: X (CSR) equals the long parquet's counts, obs its obs table;
  scanpy's normalize_total / log1p / rank_genes_groups run on it.
"""
import shutil

import anndata
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from scipy import sparse

from conftest import REPO, run
from test_de_stage import SNAKEMAKE, read_parquet

KEYS = ["cell_type", "sm_name", "sm_lincs_id", "SMILES", "control"]
PAIRS = ["B cells|stimulated", "NK cells|stimulated"]
# Over config/config.yaml and config/study.yaml: the file, the pairs, models sized for a test, and the
# generated cells written.
OVERLAY = """\
input: {h5ad: {path: %s}}
split: {holdout: {pairs: [%s]}}
forest: {n_trees: 20}
train:
  common: {max_epochs: 2, min_epochs: 1, patience: 1, batch_size: 256, decoder_hidden: [32, 64], checkpoint_every: 1}
  nbvae: {encoder_hidden: [64, 32]}
sizes: {n_trees: 20}
generate: {n_runs: 2, emit: sample, write_cells: true}
"""
RENAMED = {"Dimethyl Sulfoxide": "control", "Stimulus-1": "stimulated"}


def study_h5ad(sim_dir, path):
    """The simulator's study as a plain AnnData: obs index = cell id, obs columns cell_type,
    condition and donor only (categoricals), X = int32 counts (CSR)."""
    long = pd.read_parquet(sim_dir / "adata_train.parquet")
    obs = pd.read_csv(sim_dir / "adata_obs_meta.csv", dtype={"obs_id": str})
    genes = (sim_dir / "genes.txt").read_text().split()
    rows = pd.Index(obs["obs_id"]).get_indexer(long["obs_id"].astype(str))
    cols = pd.Index(genes).get_indexer(long["gene"].astype(str))
    x = sparse.csr_matrix((long["count"].to_numpy(np.int32), (rows, cols)), shape=(len(obs), len(genes)))
    x.sum_duplicates()
    cat = lambda values: pd.Categorical(values, categories=pd.Index(sorted(set(values)), dtype=object))
    meta = pd.DataFrame({
        "cell_type": cat(obs["cell_type"].astype(object).to_numpy()),
        "condition": cat(obs["sm_name"].map(RENAMED).astype(object).to_numpy()),
        "donor": cat(obs["donor_id"].astype(object).to_numpy()),
    }, index=pd.Index(obs["obs_id"].to_numpy(dtype=object), dtype=object))
    anndata.AnnData(X=x, obs=meta, var=pd.DataFrame(index=pd.Index(genes, dtype=object))).write_h5ad(path)
    return path


@pytest.fixture(scope="module")
def study(simulate_bin, tmp_path_factory):
    d = tmp_path_factory.mktemp("study_anndata")
    sim = d / "sim"
    run([simulate_bin, "--set", "preset=study", "--set", "seed=0", "--threads", 2, "--out", sim])
    h5ad = study_h5ad(sim, d / "study.h5ad")
    wf = d / "wf"
    wf.mkdir()
    for sub in ["workflow", "scripts", "envs", "config"]:
        shutil.copytree(REPO / sub, wf / sub, ignore=shutil.ignore_patterns("__pycache__"))
    (wf / "overlay.yaml").write_text(OVERLAY % (h5ad, ", ".join(f'"{p}"' for p in PAIRS)))
    configs = ["--configfile", wf / "config" / "config.yaml", wf / "config" / "study.yaml", wf / "overlay.yaml",
               "--config", f"bin_dir={REPO / 'target' / 'release'}"]
    run([SNAKEMAKE, "-c2", "--quiet", "rules", *configs], cwd=wf)
    return {"wf": wf, "res": wf / "results", "h5ad": h5ad, "configs": configs}


def test_study_with_three_obs_columns_runs_the_whole_dag(study):
    res = study["res"]
    # One line says what was defaulted.
    log = (study["wf"] / "logs" / "ingest.log").read_text()
    lines = [l for l in log.splitlines() if "plate_name" in l or "one pseudo-bulk sample per donor" in l]
    assert len(lines) == 1, log
    assert "plate_name = the donor (`donor`)" in lines[0] and "well = the condition (`condition`)" in lines[0], lines[0]
    obs = pd.read_parquet(res / "ingest" / "obs.parquet")
    assert (obs["plate_name"].astype(str) == obs["donor_id"].astype(str)).all()
    assert (obs["well"].astype(str) == obs["sm_name"].astype(str)).all()
    # One pseudo-bulk sample per donor × condition × cell type.
    pb = read_parquet(res / "pseudobulk" / "train.parquet")
    assert not pb.duplicated(["cell_type", "sm_name", "donor_id"]).any()
    assert (pb["plate_name"].astype(str) == pb["donor_id"].astype(str)).all()
    # The whole DAG: every route scored on the held-out pairs, the generative ones included.
    scores = pd.read_csv(res / "scores" / "scores.csv")
    routes = set(scores.loc[scores["kind"] != "reference", "route"])
    assert {"xgb", "forest", "dgd", "dgd_avg", "nbvae", "nbvae_avg"} <= routes, scores
    assert scores["mrrmse"].notna().all(), scores
    truth = read_parquet(res / "de" / "truth.parquet")
    assert {f"{r.cell_type}|{r.sm_name}" for r in truth.astype(str).itertuples()} == set(PAIRS)
    # Done is done: the forest's limma statistics its .h5ad was made from are temporary, and
    # their absence reruns nothing (the generation runs' are kept: a route rebuilt later, e.g.
    # with another generate.combine, must not regenerate run 0 for them).
    assert not list(res.glob("**/forest/de.h5ad"))
    plan = run([SNAKEMAKE, "-n", *study["configs"]], cwd=study["wf"])
    assert "Nothing to be done" in plan.stdout + plan.stderr, plan.stdout + plan.stderr


def prediction_routes(res):
    return sorted(p.stem for p in (res / "predictions").glob("*.parquet"))


def test_every_prediction_as_anndata_equals_its_parquet(study):
    res = study["res"]
    routes = prediction_routes(res)
    assert {"zero", "xgb", "forest", "dgd", "dgd_avg", "nbvae", "nbvae_avg", "xgb_forest"} <= set(routes), routes
    for route in routes:
        path = res / "predictions" / f"{route}.h5ad"
        table = read_parquet(res / "predictions" / f"{route}.parquet")
        genes = [c for c in table.columns if c not in KEYS]
        for a in (anndata.read_h5ad(path), sc.read_h5ad(path)):
            assert a.shape == (len(table), len(genes)), route
            assert list(a.var_names) == genes, route
            assert list(a.obs_names) == [f"{c}|{s}" for c, s in zip(table["cell_type"], table["sm_name"])], route
            assert list(a.obs.columns) == KEYS, route
            for col in ["cell_type", "sm_name", "sm_lincs_id", "SMILES"]:
                assert list(a.obs[col].astype(str)) == list(table[col].astype(str)), (route, col)
            assert a.obs["control"].dtype == bool
            assert np.array_equal(a.X, table[genes].to_numpy(np.float64)), route
            assert a.uns["route"] == route
        limma = route in ("forest", "dgd", "nbvae")
        assert sorted(a.layers.keys()) == (sorted(["logFC", "AveExpr", "t", "P.Value", "adj.P.Val"]) if limma else []), route
    # Settings: the config sections the route depends on, as JSON.
    xgb = anndata.read_h5ad(res / "predictions" / "xgb.h5ad")
    assert '"rounds": 10' in xgb.uns["settings"]["xgb"], xgb.uns
    dgd = anndata.read_h5ad(res / "predictions" / "dgd.h5ad")
    assert dgd.uns["settings"]["generate.emit"] == '"sample"', dgd.uns
    assert dgd.uns["limma"]["design"] == "~0+Rpert+donor_id" and dgd.uns["limma"]["negative_control"] == "control", dgd.uns


@pytest.mark.parametrize("route", ["forest", "dgd", "nbvae"])
def test_limma_routes_layers_are_limmas_numbers(route, study):
    a = anndata.read_h5ad(study["res"] / "predictions" / f"{route}.h5ad")
    log_fc, p, adj = a.layers["logFC"], a.layers["P.Value"], a.layers["adj.P.Val"]
    assert ((p >= 0) & (p <= 1)).all() and (adj >= p).all()
    x = np.sign(log_fc) * -np.log10(np.where(p == 0, np.finfo(np.float64).eps, p))
    np.testing.assert_allclose(a.X, x, rtol=0, atol=1e-12)
    n = p.shape[1]
    for i in range(a.n_obs):  # Benjamini-Hochberg within the row's contrast, by hand
        order = np.argsort(p[i])[::-1]
        bh = np.empty(n)
        bh[order] = np.minimum(1, np.minimum.accumulate(p[i][order] * n / np.arange(n, 0, -1)))
        np.testing.assert_allclose(adj[i], bh, rtol=1e-12, atol=1e-15)
    assert (np.sign(a.layers["t"]) == np.sign(log_fc)).all()


@pytest.mark.parametrize("model", ["dgd", "nbvae"])
@pytest.mark.parametrize("run_k", [0, 1])
def test_generated_cells_as_anndata(model, run_k, study):
    d = study["res"] / "generate" / model
    path = d / f"run{run_k}_cells.h5ad"
    long = read_parquet(d / f"run{run_k}_cells.parquet")
    cells_obs = read_parquet(d / f"run{run_k}_cells_obs.parquet")
    a = anndata.read_h5ad(path)
    assert sparse.isspmatrix_csr(a.X) or isinstance(a.X, sparse.csr_array), type(a.X)
    assert list(a.obs_names) == list(cells_obs["obs_id"].astype(str))
    assert list(a.obs.columns) == ["cell_type", "sm_name", "donor_id", "plate_name", "well", "run"]
    for col in ["cell_type", "sm_name", "donor_id", "plate_name", "well"]:
        assert list(a.obs[col].astype(str)) == list(cells_obs[col].astype(str)), col
    assert (a.obs["run"] == run_k).all()
    rows = a.obs_names.get_indexer(long["obs_id"].astype(str))
    cols = a.var_names.get_indexer(long["gene"].astype(str))
    assert (rows >= 0).all() and (cols >= 0).all()
    expected = sparse.csr_matrix((long["count"].to_numpy(np.float64), (rows, cols)), shape=a.shape).toarray()
    assert np.array_equal(a.X.toarray().astype(np.float64), expected)
    # The target pairs, and (generate.reference generated_controls) their cell types' control wells.
    controls = {f"{p.split('|')[0]}|control" for p in PAIRS}
    assert {f"{c}|{s}" for c, s in zip(a.obs["cell_type"], a.obs["sm_name"])} == set(PAIRS) | controls
    # scanpy's usual start: normalise, log, marker genes per cell type.
    s = sc.read_h5ad(path)
    sc.pp.normalize_total(s, target_sum=1e4)
    sc.pp.log1p(s)
    sc.tl.rank_genes_groups(s, "cell_type", method="wilcoxon")
    names = pd.DataFrame(s.uns["rank_genes_groups"]["names"])
    assert sorted(names.columns) == ["B cells", "NK cells"]
    assert len(names) == a.n_vars and names.isin(list(a.var_names)).all().all()
