"""Trained models applied to new targets without retraining (issue 22): pgen-predict and the
workflow's `predict` target (workflow/rules/predict.smk, docs/predict.md).

A small demo workflow trains one DGD and runs its generate jobs (two runs); then the `predict`
target, given the run's own targets, must give the generate jobs' files byte for byte without
rerunning anything upstream, and so must pgen-predict called by hand. A few of those pairs in a
file of their own (no id column, another order) are predicted too, and pairs the model cannot
know are refused with one line naming the file, row and value.
"""
import os
import shutil
import subprocess

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
import yaml

from conftest import REPO, _binary, run
from test_de_stage import SNAKEMAKE, read_parquet

SMALL = """\
train:
  models: [dgd]
  common: {max_epochs: 2, min_epochs: 1, patience: 1, batch_size: 256, decoder_hidden: [32, 64], checkpoint_every: 1}
sizes: {n_trees: 20}
forest: {n_trees: 20}
# Fixed generation settings (the main config's `auto` ones are chosen on the inner hold-out:
# tests/python/test_transfer.py runs the predict target with those).
generate: {n_runs: 2, inner_holdout: false, source: controls, reference: generated_controls, emit: sample}
ceiling: {enabled: false}
"""
PREDICT = "predict: {targets: results/split/targets.csv}\n"
KEYS = ["cell_type", "sm_name", "sm_lincs_id", "SMILES", "control"]
GENERATE = "results/generate/dgd"
PREDICTED = "results/predict/targets/dgd"
# What the predict target must not touch: the split, the training pseudo-bulk, the model.
UPSTREAM = ["results/split/train_counts.parquet", "results/split/targets.csv", "results/pseudobulk/train.parquet",
            "results/filter/counts.parquet", "results/models/dgd/model.safetensors", "results/models/dgd/model.json"]


def snakemake(d, *args, configs=("config.yaml", "small.yaml")):
    return run([SNAKEMAKE, *args, "-c2", "--quiet", "rules", "--configfile", *[d / c for c in configs],
                "--config", f"bin_dir={REPO / 'target' / 'release'}"], cwd=d)


def deep_merge(a, b):
    out = dict(a)
    for k, v in b.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@pytest.fixture(scope="module")
def wf(tmp_path_factory):
    d = tmp_path_factory.mktemp("predict") / "wf"
    d.mkdir()
    # workflow/Snakefile is found from the folder; the shipped config sits beside the others here.
    shutil.copy2(REPO / "config" / "config.yaml", d / "config.yaml")
    for sub in ["workflow", "scripts", "envs"]:
        shutil.copytree(REPO / sub, d / sub, ignore=shutil.ignore_patterns("__pycache__"))
    (d / "small.yaml").write_text(SMALL)
    (d / "predict.yaml").write_text(PREDICT)
    # The run's own generation first (its two runs and the size table) ...
    snakemake(d, f"{GENERATE}/run0.parquet", f"{GENERATE}/run1.parquet", "results/generate/sizes.csv")
    before = {p: os.stat(d / p).st_mtime_ns for p in UPSTREAM}
    # ... then the predict target for the same pairs, which must not rerun any of it.
    snakemake(d, "predict", configs=("config.yaml", "small.yaml", "predict.yaml"))
    after = {p: os.stat(d / p).st_mtime_ns for p in UPSTREAM}
    assert after == before, "the predict target reran an upstream stage"
    # The settings as one config file, for pgen-predict by hand.
    merged = deep_merge(yaml.safe_load((d / "config.yaml").read_text()), yaml.safe_load(SMALL))
    (d / "merged.yaml").write_text(yaml.safe_dump(merged))
    return d


def predict_cmd(wf, targets, out_dir, *extra):
    res = wf / "results"
    return [_binary("pgen-predict"), "--model", res / "models" / "dgd", "--targets", targets,
            "--counts", res / "split" / "train_counts.parquet", "--obs", res / "split" / "train_obs.parquet",
            "--pseudobulk", res / "pseudobulk" / "train.parquet", "--config", wf / "merged.yaml",
            "--script", REPO / "scripts" / "limma_de.R", "--threads", "2",
            "--out", out_dir / "prediction.parquet", "--out-h5ad", out_dir / "prediction.h5ad",
            "--out-sizes", out_dir / "sizes.csv", "--out-pseudobulk", out_dir / "pseudobulk.parquet", *extra]


def test_the_predict_target_gives_the_generate_jobs_bytes(wf):
    for k in range(2):
        for name in [f"run{k}.parquet", f"run{k}_pseudobulk.parquet"]:
            assert (wf / PREDICTED / name).read_bytes() == (wf / GENERATE / name).read_bytes(), name
        # The size table of every run is the sizes job's (the forests are seeded, not run-seeded).
        assert (wf / PREDICTED / f"run{k}_sizes.csv").read_bytes() == (wf / "results/generate/sizes.csv").read_bytes()
    # The two runs differ, and the combined prediction is their mean (generate.combine: mean).
    runs = [read_parquet(wf / GENERATE / f"run{k}.parquet") for k in range(2)]
    genes = [c for c in runs[0].columns if c not in KEYS]
    assert not np.array_equal(runs[0][genes].to_numpy(), runs[1][genes].to_numpy())
    combined = read_parquet(wf / PREDICTED / "prediction.parquet")
    assert combined[KEYS[:2]].values.tolist() == runs[0][KEYS[:2]].values.tolist()
    np.testing.assert_allclose(combined[genes].to_numpy(float), (runs[0][genes].to_numpy(float) + runs[1][genes].to_numpy(float)) / 2, rtol=0, atol=1e-12)


def test_pgen_predict_by_hand_gives_the_same_bytes_and_limma_statistics(wf, tmp_path):
    run(predict_cmd(wf, wf / "results/split/targets.csv", tmp_path))
    assert (tmp_path / "prediction.parquet").read_bytes() == (wf / GENERATE / "run0.parquet").read_bytes()
    assert (tmp_path / "pseudobulk.parquet").read_bytes() == (wf / GENERATE / "run0_pseudobulk.parquet").read_bytes()
    assert (tmp_path / "sizes.csv").read_bytes() == (wf / "results/generate/sizes.csv").read_bytes()
    # The AnnData form: X is the table's values, and sign(logFC)·−log10 P of its own layers.
    table = read_parquet(tmp_path / "prediction.parquet")
    for read in (ad.read_h5ad, sc.read_h5ad):
        a = read(tmp_path / "prediction.h5ad")
        assert list(a.obs["cell_type"].astype(str)) == list(table.cell_type.astype(str))
        assert list(a.obs["sm_name"].astype(str)) == list(table.sm_name.astype(str))
        np.testing.assert_array_equal(np.asarray(a.X), table[list(a.var_names)].to_numpy(float))
        p = a.layers["P.Value"]
        assert ((p > 0) & (p <= 1)).all() and ((a.layers["adj.P.Val"] >= p - 1e-15)).all()
        expected = np.sign(a.layers["logFC"]) * -np.log10(np.where(p <= 0, np.finfo(float).eps, p))
        np.testing.assert_allclose(np.asarray(a.X), expected, rtol=1e-12, atol=1e-12)
        assert a.uns["route"] == "dgd"


def test_new_pairs_seen_apart_in_training_are_predicted(wf, tmp_path):
    """A file of pairs only (no id column, another order): each cell type and compound is in
    the model's training cells, never together. Their size rows are the sizes job's rows for
    the same groups (the forests do not depend on the other targets)."""
    obs = read_parquet(wf / "results/split/train_obs.parquet")
    targets = pd.read_csv(wf / "results/split/targets.csv")
    pairs = targets.iloc[[5, 0, 13]][["cell_type", "sm_name"]]
    measured = set(map(tuple, obs[["cell_type", "sm_name"]].astype(str).drop_duplicates().values))
    for ct, sm in pairs.values:
        assert (obs.cell_type == ct).any() and (obs.sm_name == sm).any() and (ct, sm) not in measured
    pairs.to_csv(tmp_path / "new_pairs.csv", index=False)
    out = tmp_path / "out"
    run(predict_cmd(wf, tmp_path / "new_pairs.csv", out))
    got = read_parquet(out / "prediction.parquet")
    assert sorted(map(tuple, got[["cell_type", "sm_name"]].astype(str).values)) == sorted(map(tuple, pairs.values))
    genes = [c for c in got.columns if c not in KEYS]
    values = got[genes].to_numpy(float)
    assert np.isfinite(values).all() and (np.abs(values) > 0).mean() > 0.5
    sizes = pd.read_csv(out / "sizes.csv")
    workflow_sizes = pd.read_csv(wf / "results/generate/sizes.csv")
    key = ["cell_type", "sm_name", "plate_name", "well", "source"]
    predicted = sizes[sizes.source == "predicted"]
    assert set(map(tuple, predicted[["cell_type", "sm_name"]].values)) == set(map(tuple, pairs.values))
    joined = predicted.merge(workflow_sizes, on=key, suffixes=("", "_workflow"), how="left")
    assert joined.n_cells_workflow.notna().all()
    np.testing.assert_array_equal(joined.n_cells.to_numpy(), joined.n_cells_workflow.to_numpy())
    np.testing.assert_array_equal(joined.scale.to_numpy(), joined.scale_workflow.to_numpy())


@pytest.mark.parametrize("pair, row_column, found", [
    (("Platelets", "Compound-005"), "column `cell_type`", "`Platelets`"),
    (("B cells", "Compound-999"), "column `sm_name`", "`Compound-999`"),
    # A positive control: in the training cells, but filtered out of the model's (filter.drop_compounds).
    (("NK cells", "Dabrafenib"), "column `sm_name`", "`Dabrafenib`"),
    # Measured: its DE is in de_train, and its real samples would mix with the generated ones.
    (("B cells", "Compound-001"), "column `sm_name`", "`B cells` × `Compound-001`"),
])
def test_pairs_the_model_cannot_know_are_refused(wf, tmp_path, pair, row_column, found):
    targets = pd.read_csv(wf / "results/split/targets.csv")
    bad = pd.concat([targets, pd.DataFrame([{"id": 10**6, "cell_type": pair[0], "sm_name": pair[1]}])])
    path = tmp_path / "bad_targets.csv"
    bad.to_csv(path, index=False)
    out = tmp_path / "out"
    proc = subprocess.run([str(c) for c in predict_cmd(wf, path, out)], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: {path}: row {len(bad)}, {row_column}") and found in line, line
    assert not out.exists() or not any(out.iterdir()), "nothing is written"


def test_the_predict_target_needs_its_targets(wf):
    proc = subprocess.run([str(SNAKEMAKE), "predict", "-n", "--configfile", wf / "config.yaml", wf / "small.yaml",
                           "--config", f"bin_dir={REPO / 'target' / 'release'}"], cwd=wf, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "config: predict.targets: null" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    proc = subprocess.run([str(SNAKEMAKE), "predict", "-n", "--configfile", wf / "config.yaml", wf / "small.yaml",
                           "--config", f"bin_dir={REPO / 'target' / 'release'}", "predict={targets: nowhere.csv}"],
                          cwd=wf, capture_output=True, text=True)
    assert proc.returncode != 0
    assert "config: predict.targets: no such file `nowhere.csv`" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_the_kaggle_id_map_is_read_and_its_unknown_compounds_named(wf, tmp_path):
    """The competition's id_map.csv (../shared/kaggle-layout) is a valid targets file; against
    the demo's model its first row's compound is one the model never saw."""
    from conftest import LAYOUT_DIR
    id_map = LAYOUT_DIR / "id_map.csv"
    if not id_map.is_file():
        pytest.skip(f"{LAYOUT_DIR} not found (CI provides ../shared beside the repository)")
    first = pd.read_csv(id_map).iloc[0]
    proc = subprocess.run([str(c) for c in predict_cmd(wf, id_map, tmp_path / "out")], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: {id_map}: row 1, column `sm_name`") and f"`{first.sm_name}`" in line, line
    assert not (tmp_path / "out").exists()


def test_counterfactuals_from_controls_take_the_same_path(wf, tmp_path):
    """generate.source: controls (the target cell types' own control cells decoded with the
    target's covariates, the shipped setting): pgen-predict and pgen-generate, given the model's
    cells, agree byte for byte, and with the workflow's own run 0."""
    res = wf / "results"
    cells = ["--cells-counts", res / "filter" / "counts.parquet", "--cells-obs", res / "filter" / "obs.parquet"]
    source = '{"source": "controls"}'
    run([_binary("pgen-generate"), "--model", res / "models" / "dgd", "--sizes", res / "generate" / "sizes.csv",
         "--pseudobulk", res / "pseudobulk" / "train.parquet", "--targets", res / "split" / "targets.csv",
         "--config", wf / "merged.yaml", "--params", source, *cells, "--script", REPO / "scripts" / "limma_de.R",
         "--threads", "2", "--out", tmp_path / "generated.parquet", "--out-pseudobulk", tmp_path / "generated_pb.parquet"])
    out = tmp_path / "predicted"
    run(predict_cmd(wf, res / "split" / "targets.csv", out, *cells, "--section", f"generate={source}"))
    assert (out / "prediction.parquet").read_bytes() == (tmp_path / "generated.parquet").read_bytes()
    assert (out / "pseudobulk.parquet").read_bytes() == (tmp_path / "generated_pb.parquet").read_bytes()
    assert (out / "pseudobulk.parquet").read_bytes() == (wf / GENERATE / "run0_pseudobulk.parquet").read_bytes()
