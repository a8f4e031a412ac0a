"""Real data beyond the Kaggle shape: the simulator's `study` preset (a stimulation study: two
donors with one plate each, one well per condition, five PBMC cell types, no positive
controls, no plate rows) through the whole regression DAG, holding out cell types' only
stimulus — the classic scGen/CPA task: predict a cell type measured only under control."""
import shutil

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
ROUTES = {"zero", "xgb", "forest", "xgb_zero", "xgb_forest"}


def workflow_copy(tmp_path, pairs):
    d = tmp_path / "wf"
    d.mkdir()
    shutil.copy2(REPO / "Snakefile", d / "Snakefile")
    shutil.copy2(REPO / "config.yaml", d / "config.yaml")
    for sub in ["workflow", "scripts", "envs"]:
        shutil.copytree(REPO / sub, d / sub, ignore=shutil.ignore_patterns("__pycache__"))
    (d / "study.yaml").write_text(STUDY % ", ".join(f'"{p}"' for p in pairs))
    return d


@pytest.mark.parametrize("pairs", [
    ["B cells|Stimulus-1"],
    ["B cells|Stimulus-1", "NK cells|Stimulus-1"],
], ids=["one-cell-type", "two-cell-types"])
def test_study_holdout_of_a_cell_types_only_stimulus(pairs, tmp_path):
    d = workflow_copy(tmp_path, pairs)
    run([SNAKEMAKE, "-c2", "--quiet", "rules", "--configfile", d / "config.yaml", d / "study.yaml",
         "--config", f"bin_dir={REPO / 'target' / 'release'}"], cwd=d)
    res = d / "results"
    scores = pd.read_csv(res / "scores" / "scores.csv")
    assert set(scores["route"]) == ROUTES, scores
    assert scores["mrrmse"].notna().all()
    held = {tuple(p.split("|")) for p in pairs}
    for route in ROUTES:
        rows = pd.read_csv(res / "scores" / f"{route}.csv")
        scored = {(r.cell_type, r.sm_name) for r in rows.itertuples() if (r.cell_type, r.sm_name) != ("ALL", "MRRMSE")}
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
