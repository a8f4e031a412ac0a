"""Any model's cells on the same yardstick (issue 25): the `external` route (pgen-external,
workflow/rules/external.smk) scores generated cells from outside the pipeline exactly as the
generative routes are scored.

The demo workflow runs with one small DGD model whose generation keeps its cells
(`generate: {emit: sample, write_cells: true, n_runs: 1, reference: real, source: controls}`, no
inner hold-out, so that both routes take the same clip: the external route
contrasts with the real samples, as generate.reference real does); run 0's cells are written as an
.h5ad with the `anndata` package, as another model's output would come (CSR float counts, the
genes in another order, obs with the file's own column names for cell type and compound and
nothing but the five columns the route needs), and scored through the external route. Its
prediction must be the `dgd` route's (same pairs, genes and values to 1e-12) and so must its
scores. Bad inputs: one line naming the file, exit 1, no output.
"""
import shutil
import subprocess

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from conftest import REPO, _binary, run
from test_de_stage import SNAKEMAKE, read_parquet

SMALL = """\
train:
  models: [dgd]
  common: {max_epochs: 2, min_epochs: 1, patience: 1, batch_size: 256, decoder_hidden: [32, 64], checkpoint_every: 1}
sizes: {n_trees: 20}
forest: {n_trees: 20}
generate: {emit: sample, write_cells: true, n_runs: 1, reference: real, source: controls, inner_holdout: false}
ceiling: {enabled: false}
"""
EXTERNAL = """\
external:
  cells: other_model.h5ad
  name: other_model
  obs: {cell_type: celltype, sm_name: condition}
"""
KEYS = ["cell_type", "sm_name", "sm_lincs_id", "SMILES", "control"]
RUN0 = "results/generate/dgd/run0"


def snakemake(d, *args, configs=("config/config.yaml", "small.yaml")):
    files = [d / c for c in configs]
    return run([SNAKEMAKE, *args, "-c2", "--quiet", "rules", "--configfile", *files,
                "--config", f"bin_dir={REPO / 'target' / 'release'}"], cwd=d)


def write_h5ad(d, path, edit=None):
    """Run 0's generated cells as another model's .h5ad: CSR float32 counts, the genes
    reversed, obs = cell type (as `celltype`), compound (as `condition`), donor, plate, well;
    `edit(X, obs, var)` may change them first."""
    obs = read_parquet(d / f"{RUN0}_cells_obs.parquet")
    counts = read_parquet(d / f"{RUN0}_cells.parquet")
    genes = [c for c in read_parquet(d / "results/pseudobulk/train.parquet").columns
             if c not in ("cell_type", "plate_name", "well", "donor_id", "row", "sm_name", "sm_lincs_id", "SMILES", "control", "n_cells")]
    # Plain Python strings: anndata writes no pyarrow-backed strings.
    var = pd.Index(genes[::-1], dtype=object)
    cells = pd.Index(obs["obs_id"].astype(str).tolist(), dtype=object)
    rows = cells.get_indexer(counts["obs_id"].astype(str).tolist())
    cols = var.get_indexer(counts["gene"].astype(str).tolist())
    assert (rows >= 0).all() and (cols >= 0).all()
    x = sparse.csr_matrix((counts["count"].to_numpy(np.float32), (rows, cols)), shape=(len(cells), len(var)))
    meta = obs_frame(cells, {"celltype": obs["cell_type"], "condition": obs["sm_name"], "donor_id": obs["donor_id"],
                             "plate_name": obs["plate_name"], "well": obs["well"]})
    var_df = pd.DataFrame(index=var)
    if edit is not None:
        x, meta, var_df = edit(x, meta, var_df)
    # Categoricals are made explicitly (obs_frame); anndata's conversion would give them str categories.
    ad.AnnData(X=x, obs=meta, var=var_df).write_h5ad(path, convert_strings_to_categoricals=False)
    return path


def obs_frame(index, columns):
    """An obs dataframe anndata can write under pandas 3: object strings, the first two columns
    categoricals with object categories (as the h5ad fixtures make them)."""
    out = {}
    for k, (name, values) in enumerate(columns.items()):
        v = [str(x) for x in values]
        out[name] = pd.Categorical(v, categories=pd.Index(sorted(set(v)), dtype=object)) if k < 2 else pd.Series(v, dtype=object, index=index)
    return pd.DataFrame(out, index=index)


@pytest.fixture(scope="module")
def wf(tmp_path_factory):
    d = tmp_path_factory.mktemp("external") / "wf"
    d.mkdir()
    for sub in ["workflow", "config", "scripts", "envs"]:
        shutil.copytree(REPO / sub, d / sub, ignore=shutil.ignore_patterns("__pycache__"))
    (d / "small.yaml").write_text(SMALL)
    (d / "external.yaml").write_text(EXTERNAL)
    # The model's cells first; then the whole DAG with them scored as route other_model.
    snakemake(d, f"{RUN0}_cells.parquet", f"{RUN0}_cells_obs.parquet", "results/pseudobulk/train.parquet")
    write_h5ad(d, d / "other_model.h5ad")
    snakemake(d, "all", configs=("config/config.yaml", "small.yaml", "external.yaml"))
    return d


def test_the_external_route_equals_the_internal_one(wf):
    res = wf / "results"
    ours = read_parquet(res / "predictions" / "dgd.parquet")
    theirs = read_parquet(res / "predictions" / "other_model.parquet")
    assert list(theirs.columns) == list(ours.columns)
    assert len(ours) > 0 and len(theirs) == len(ours)
    for k in KEYS:
        assert theirs[k].astype(str).tolist() == ours[k].astype(str).tolist(), k
    genes = [c for c in ours.columns if c not in KEYS]
    a, b = ours[genes].to_numpy(float), theirs[genes].to_numpy(float)
    assert np.isfinite(a).all() and np.abs(a).max() > 0
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-12)
    # The same samples went into limma: the external pseudo-bulk is the generation's.
    pb_ours = read_parquet(res / "generate" / "dgd" / "run0_pseudobulk.parquet")
    pb_theirs = read_parquet(res / "external" / "other_model_pseudobulk.parquet")
    by = ["cell_type", "plate_name", "well"]
    pd.testing.assert_frame_equal(pb_theirs.sort_values(by).reset_index(drop=True)[pb_ours.columns],
                                  pb_ours.sort_values(by).reset_index(drop=True), check_categorical=False)


def test_the_external_route_is_scored_and_submitted_like_dgd(wf):
    scores = wf / "results" / "scores"
    ours = pd.read_csv(scores / "dgd.csv")
    theirs = pd.read_csv(scores / "other_model.csv")
    pd.testing.assert_frame_equal(theirs, ours, rtol=0, atol=1e-12)
    table = pd.read_csv(scores / "scores.csv").set_index("route")
    assert {"dgd", "other_model"} <= set(table.index), table.index
    numeric = table.select_dtypes("number").columns
    np.testing.assert_allclose(table.loc["other_model", numeric].to_numpy(float), table.loc["dgd", numeric].to_numpy(float), rtol=0, atol=1e-12)
    sub = wf / "results" / "submission"
    pd.testing.assert_frame_equal(pd.read_csv(sub / "other_model.csv"), pd.read_csv(sub / "dgd.csv"))
    log = (wf / "logs" / "external" / "other_model.log").read_text()
    assert "pseudo-bulk samples" in log, log


def test_the_external_route_as_anndata_has_limmas_layers(wf):
    """results/predictions/other_model.h5ad (docs/anndata.md): X is its parquet, the layers are
    limma's statistics of the same samples as dgd's run 0 (pgen-external --out-de-h5ad)."""
    pred = wf / "results" / "predictions"
    ours, theirs = ad.read_h5ad(pred / "dgd.h5ad"), ad.read_h5ad(pred / "other_model.h5ad")
    assert theirs.uns["route"] == "other_model" and ours.uns["route"] == "dgd"
    assert theirs.uns["limma"]["design"] == ours.uns["limma"]["design"]
    assert '"cells": "other_model.h5ad"' in theirs.uns["settings"]["external"], theirs.uns
    table = read_parquet(pred / "other_model.parquet")
    genes = [c for c in table.columns if c not in KEYS]
    assert list(theirs.var_names) == genes and list(theirs.obs_names) == list(ours.obs_names)
    assert np.array_equal(theirs.X, table[genes].to_numpy(float))
    assert sorted(theirs.layers.keys()) == sorted(ours.layers.keys()) == sorted(["logFC", "AveExpr", "t", "P.Value", "adj.P.Val"])
    for layer in ours.layers.keys():
        np.testing.assert_allclose(theirs.layers[layer], ours.layers[layer], rtol=1e-12, atol=1e-12, err_msg=layer)
    # The statistics were intermediates: temp(), gone once the .h5ad is written.
    assert not (wf / "results" / "external" / "other_model_de.h5ad").exists()


def external_cmd(wf, cells, out, *extra):
    res = wf / "results"
    return [_binary("pgen-external"), "--cells", cells, "--pseudobulk", res / "pseudobulk" / "train.parquet",
            "--targets", res / "split" / "targets.csv", "--config", wf / "config" / "config.yaml",
            "--script", REPO / "scripts" / "limma_de.R", "--set", "obs={cell_type: celltype, sm_name: condition}",
            "--out", out, *extra]


def test_cells_of_other_pairs_are_left_out(wf, tmp_path):
    """Cells of a pair that is not a target (here: copies relabelled as the negative control)
    are ignored with a log line; the prediction is unchanged."""
    def add_others(x, obs, var):
        n = min(50, x.shape[0])
        index = pd.Index([*obs.index, *(f"other-{i}" for i in range(n))], dtype=object)
        columns = {c: [*obs[c], *obs[c].iloc[:n]] for c in obs.columns}
        columns["condition"][-n:] = ["Dimethyl Sulfoxide"] * n
        columns["well"][-n:] = ["Z99"] * n
        return sparse.vstack([x, x[:n]]).tocsr(), obs_frame(index, columns), var
    cells = write_h5ad(wf, tmp_path / "with_others.h5ad", add_others)
    out = tmp_path / "pred.parquet"
    proc = run(external_cmd(wf, cells, out))
    assert "not targets are left out" in proc.stderr, proc.stderr
    ours = read_parquet(wf / "results" / "predictions" / "dgd.parquet")
    theirs = read_parquet(out)
    genes = [c for c in ours.columns if c not in KEYS]
    np.testing.assert_allclose(theirs[genes].to_numpy(float), ours[genes].to_numpy(float), rtol=0, atol=1e-12)


def _drop_gene(x, obs, var):
    return x[:, 1:], obs, var.iloc[1:]


def _fraction(x, obs, var):
    x = x.copy()
    x.data[3] = 0.5
    return x, obs, var


def _no_donor(x, obs, var):
    # plate_name and well have defaults (the donor, the condition); the donor has none.
    return x, obs.drop(columns=["donor_id"]), var


def _no_target(x, obs, var):
    first = obs["celltype"].iloc[0], obs["condition"].iloc[0]
    keep = ~((obs["celltype"] == first[0]) & (obs["condition"] == first[1])).to_numpy()
    return x[keep], obs[keep], var


@pytest.mark.parametrize("edit,expected", [
    (_drop_gene, "of the pipeline's genes is not in the file's var names"),
    (_fraction, "0.5"),
    (_no_donor, "`donor_id`"),
    (_no_target, "no cells of target pair"),
], ids=["missing-gene", "non-integer-count", "missing-obs-column", "missing-target-pair"])
def test_bad_cells_one_line_exit_1_no_output(wf, tmp_path, edit, expected):
    cells = write_h5ad(wf, tmp_path / "bad.h5ad", edit)
    out = tmp_path / "pred.parquet"
    proc = subprocess.run([str(c) for c in external_cmd(wf, cells, out, "--out-pseudobulk", tmp_path / "pb.parquet")],
                          capture_output=True, text=True, env={"RUST_LOG": "error", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert str(cells) in lines[0] and expected in lines[0], lines[0]
    assert not out.exists() and not (tmp_path / "pb.parquet").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.h5ad"]
