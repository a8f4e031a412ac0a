"""Real data beyond the Kaggle shape: the simulator's `study` preset (a stimulation study: two
donors with one plate each, one well per condition, five PBMC cell types, no positive
controls, no plate rows) through the whole regression DAG, holding out cell types' only
stimulus — the classic scGen/CPA task: predict a cell type measured only under control."""
import re
import shutil
import subprocess

import pandas as pd
import pytest

from conftest import REPO, run
from test_de_stage import SNAKEMAKE, read_parquet

STUDY = """\
simulate: {preset: study}
cell_types: [CD14+ Monocytes, B cells, CD4 T cells, NK cells, CD8 T cells]
train: {models: []}
forest: {n_trees: 30}
split:
  mode: holdout
  holdout: {pairs: [%s]}
filter:
  drop_compounds: []   # a study without positive controls
"""
ROUTES = {"zero", "global_mean", "mean_cell_type", "mean_compound", "xgb", "forest", "xgb_zero", "xgb_forest"}


def workflow_copy(tmp_path, pairs):
    d = tmp_path / "wf"
    d.mkdir()
    for sub in ["workflow", "config", "scripts", "envs"]:
        shutil.copytree(REPO / sub, d / sub, ignore=shutil.ignore_patterns("__pycache__"))
    (d / "study.yaml").write_text(STUDY % ", ".join(f'"{p}"' for p in pairs))
    return d


@pytest.mark.parametrize("pairs", [
    ["B cells|Stimulus-1"],
    ["B cells|Stimulus-1", "NK cells|Stimulus-1"],
], ids=["one-cell-type", "two-cell-types"])
def test_study_holdout_of_a_cell_types_only_stimulus(pairs, tmp_path):
    d = workflow_copy(tmp_path, pairs)
    run([SNAKEMAKE, "-c2", "--quiet", "rules", "--configfile", d / "config" / "config.yaml", d / "study.yaml",
         "--config", f"bin_dir={REPO / 'target' / 'release'}"], cwd=d)
    res = d / "results"
    scores = pd.read_csv(res / "scores" / "scores.csv")
    # The routes and baselines, and the noise ceiling as the board's reference row.
    assert set(scores.loc[scores["kind"] != "reference", "route"]) == ROUTES, scores
    assert list(scores.loc[scores["kind"] == "reference", "route"]) == ["ceiling"], scores
    assert scores["mrrmse"].notna().all()
    held = {tuple(p.split("|")) for p in pairs}
    for route in ROUTES:
        rows = pd.read_csv(res / "scores" / f"{route}.csv")
        scored = {(r.cell_type, r.sm_name) for r in rows.itertuples() if (r.cell_type, r.sm_name) != ("ALL", "MEAN")}
        assert scored == held, (route, scored)
    # The held-out cell types were measured only under control: no de_train rows of theirs
    # (the simulator also withholds CD14+ Monocytes' stimulus), yet they are predicted.
    de = read_parquet(res / "de" / "de_train.parquet")
    assert not set(de["cell_type"].astype(str)) & ({ct for ct, _ in held} | {"CD14+ Monocytes"})
    assert len(de) == 5 - 1 - len(held)
    truth = read_parquet(res / "de" / "truth.parquet")
    assert {(r.cell_type, r.sm_name) for r in truth.astype({"cell_type": str, "sm_name": str}).itertuples()} == held
    # xgb beats the zero prediction on the held-out cell types (the stimulus is shared).
    best = dict(zip(scores["route"], scores["mrrmse"]))
    assert best["xgb"] < best["zero"], best
    # A one-level factor of the design (row: every well is in plate row A) is dropped, noted.
    log = (d / "logs" / "limma_truth" / "b_cells.log").read_text()
    assert "row" in log and "single level" in log.lower(), log
    if len(pairs) == 1:
        # Issue 23, point 4: a moved project (scratch -> home) is up to date where it lands:
        # the workflow's inputs are relative to it (the limma script used to be absolute).
        moved = tmp_path / "moved"
        shutil.move(d, moved)
        plan = subprocess.run([str(c) for c in [SNAKEMAKE, "-n", "--configfile", moved / "config" / "config.yaml", moved / "study.yaml",
                                                "--config", f"bin_dir={REPO / 'target' / 'release'}"]],
                              cwd=moved, capture_output=True, text=True)
        assert plan.returncode == 0, plan.stderr
        assert "Nothing to be done" in plan.stdout + plan.stderr, plan.stdout + plan.stderr


# The same study with the generative models on, as a new user runs it: config/config.yaml's defaults
# but for `drop_compounds: []` (no positive controls) and training sized for a test.
MODELS = """\
train:
  models: [dgd, nbvae]
  common: {max_epochs: 2, min_epochs: 1, patience: 1, batch_size: 256, decoder_hidden: [32, 64], checkpoint_every: 1}
  nbvae: {encoder_hidden: [64, 32]}
sizes: {n_trees: 20}
generate: {n_runs: 2}
"""
GENERATIVE = {"dgd", "dgd_avg", "nbvae", "nbvae_avg", "xgb_dgd"}


def test_study_with_the_generative_models_and_no_positive_controls(tmp_path):
    """Issue 21: `filter.drop_compounds: []` means no compound is dropped (pgen-filter used to
    fall back to its own default, Dabrafenib and Belinostat, and stop on a study without them);
    the whole DAG runs with the models on and puts the generative routes on the scores table."""
    d = workflow_copy(tmp_path, ["B cells|Stimulus-1"])
    (d / "models.yaml").write_text(MODELS)
    run([SNAKEMAKE, "-c2", "--quiet", "rules", "--configfile", d / "config" / "config.yaml", d / "study.yaml", d / "models.yaml",
         "--config", f"bin_dir={REPO / 'target' / 'release'}"], cwd=d)
    res = d / "results"
    removed = pd.read_csv(res / "filter" / "removed.csv")
    assert removed.empty, removed
    scores = pd.read_csv(res / "scores" / "scores.csv")
    assert set(scores.loc[scores["kind"] != "reference", "route"]) == ROUTES | GENERATIVE, scores
    assert scores["mrrmse"].notna().all(), scores
    for route in GENERATIVE:
        rows = pd.read_csv(res / "scores" / f"{route}.csv")
        assert {(r.cell_type, r.sm_name) for r in rows.itertuples()} >= {("B cells", "Stimulus-1")}, (route, rows)
    # Issue 23, point 1: a changed generation setting reruns the generation (it used to say
    # "Nothing to be done"), and the cells asked for are targets of `all`.
    plan = subprocess.run([str(c) for c in [SNAKEMAKE, "-n", "--configfile", d / "config" / "config.yaml", d / "study.yaml", d / "models.yaml",
                                            "--config", f"bin_dir={REPO / 'target' / 'release'}",
                                            "generate={emit: sample, write_cells: true}"]],
                          cwd=d, capture_output=True, text=True)
    out = plan.stdout + plan.stderr
    assert plan.returncode == 0, out
    planned = dict(re.findall(r"^(\w+)\s+(\d+)$", out, re.M))
    assert int(planned.get("generate", 0)) == 4, out  # 2 models x 2 runs
    assert "run0_cells.parquet" in out and "run1_cells_obs.parquet" in out, out
