"""The size forests' two modes (issue 24) on the simulator's `study` preset: B and NK cells are
measured only under control (their one stimulus held out), so the absolute forests, which never
saw them treated, give them the treated cell types' (CD4/CD8 T cells') size; the forests
relative to the controls give them their own control wells' size × the stimulus' effect learnt
from the T cells. Judged against the held-out cells themselves (numpy/pandas)."""
import subprocess

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, _binary, run
from test_de_stage import SNAKEMAKE
from test_study import workflow_copy

PAIRS = ["B cells|Stimulus-1", "NK cells|Stimulus-1"]
SIZES = """\
simulate: {seed: 3}
train: {models: [dgd]}
sizes: {n_trees: 100}
"""
GROUP = ["cell_type", "plate_name", "well"]


def truth_sizes(split):
    """Cells per held-out group and the median over its cells of the largest count (`scale: max`)."""
    obs = pd.read_parquet(split / "holdout_obs.parquet")
    counts = pd.read_parquet(split / "holdout_counts.parquet")
    largest = counts.groupby(counts["obs_id"].astype(str), observed=True)["count"].max()
    obs = obs.astype({c: str for c in ["obs_id", *GROUP]})
    obs["M"] = obs["obs_id"].map(largest).fillna(0).clip(lower=1)
    return obs.groupby(GROUP).agg(n_true=("M", "size"), scale_true=("M", "median"))


def predicted(path):
    sizes = pd.read_csv(path)
    return sizes[sizes.source == "predicted"].set_index(GROUP)[["n_cells", "scale"]]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    d = workflow_copy(tmp_path_factory.mktemp("sizes"), PAIRS)
    (d / "sizes.yaml").write_text(SIZES)
    run([SNAKEMAKE, "-c2", "--quiet", "rules", "--configfile", d / "config.yaml", d / "study.yaml", d / "sizes.yaml",
         "--config", f"bin_dir={REPO / 'target' / 'release'}", "--", "results/generate/sizes.csv"], cwd=d)
    return d


def test_relative_sizes_are_closer_to_the_held_out_cells_than_absolute_ones(study, tmp_path):
    res = study / "results"
    split = res / "split"
    # The shipped default (relative), through the workflow; the absolute mode by the same binary.
    relative = predicted(res / "generate" / "sizes.csv")
    run([_binary("pgen-sizes"), "--counts", split / "train_counts.parquet", "--obs", split / "train_obs.parquet",
         "--targets", split / "targets.csv", "--exclude-compound", "Dimethyl Sulfoxide", "--negative-control", "Dimethyl Sulfoxide",
         "--set", "n_trees=100", "--set", "relative_to_controls=false", "--out", tmp_path / "absolute.csv", "--plot", tmp_path / "absolute.png"])
    absolute = predicted(tmp_path / "absolute.csv")
    truth = truth_sizes(split)
    assert set(truth.index) == set(relative.index) == set(absolute.index) == {
        (ct, p, "A2") for ct in ["B cells", "NK cells"] for p in ["plate_0", "plate_1"]}
    both = truth.join(relative).join(absolute.add_suffix("_absolute"))

    def log_error(pred, true):
        return np.abs(np.log(both[pred] / both[true]))

    for quantity, true in [("scale", "scale_true"), ("n_cells", "n_true")]:
        rel, ab = log_error(quantity, true), log_error(f"{quantity}_absolute", true)
        # Per group and on average: the cell type's own controls beat the others' average.
        assert (rel < ab).all(), (quantity, both)
        assert rel.mean() < 0.5 * ab.mean(), (quantity, both)
    # B cells' scale is larger than NK cells' (so are their control wells'): the relative mode
    # keeps their order, the absolute one cannot tell them apart (no level for either).
    by_ct = both.groupby(level="cell_type")[["scale", "scale_absolute", "scale_true"]].mean()
    assert by_ct.loc["B cells", "scale_true"] > by_ct.loc["NK cells", "scale_true"]
    assert by_ct.loc["B cells", "scale"] > by_ct.loc["NK cells", "scale"], by_ct
    assert by_ct.loc["B cells", "scale_absolute"] == by_ct.loc["NK cells", "scale_absolute"], by_ct
    # The log reports both modes' held-out R², naming the one used.
    log = (study / "logs" / "sizes.log").read_text()
    assert "held-out R² absolute:" in log and "held-out R² relative to controls (used):" in log, log


def test_relative_sizes_refuse_a_target_cell_type_without_control_wells(study, tmp_path):
    """A cell type with no negative-control cells has no size of its own: one line naming the
    targets row, nothing written; likewise without --negative-control."""
    split = study / "results" / "split"
    obs = pd.read_parquet(split / "train_obs.parquet")
    keep = ~((obs["cell_type"].astype(str) == "NK cells") & (obs["sm_name"].astype(str) == "Dimethyl Sulfoxide"))
    obs[keep].to_parquet(tmp_path / "obs.parquet")
    counts = pd.read_parquet(split / "train_counts.parquet")
    counts[counts["obs_id"].astype(str).isin(set(obs.loc[keep, "obs_id"].astype(str)))].to_parquet(tmp_path / "counts.parquet")
    proc = subprocess.run([str(c) for c in [_binary("pgen-sizes"), "--counts", tmp_path / "counts.parquet", "--obs", tmp_path / "obs.parquet",
                                            "--targets", split / "targets.csv", "--exclude-compound", "Dimethyl Sulfoxide",
                                            "--negative-control", "Dimethyl Sulfoxide", "--set", "n_trees=10",
                                            "--out", tmp_path / "s.csv", "--plot", tmp_path / "s.png"]],
                          capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    assert "targets.csv: row 2: cell type `NK cells` has no `Dimethyl Sulfoxide` (negative-control) cells" in proc.stderr, proc.stderr
    assert not (tmp_path / "s.csv").exists() and not (tmp_path / "s.png").exists()
    # Without the negative control's name there is no baseline at all: refused, naming the key.
    proc = subprocess.run([str(c) for c in [_binary("pgen-sizes"), "--counts", split / "train_counts.parquet", "--obs", split / "train_obs.parquet",
                                            "--targets", split / "targets.csv", "--exclude-compound", "Dimethyl Sulfoxide", "--set", "n_trees=10",
                                            "--out", tmp_path / "s.csv", "--plot", tmp_path / "s.png"]],
                          capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    assert "error: sizes.relative_to_controls: true needs the negative control's wells: pass --negative-control" in proc.stderr, proc.stderr
    assert not (tmp_path / "s.csv").exists() and not (tmp_path / "s.png").exists()
