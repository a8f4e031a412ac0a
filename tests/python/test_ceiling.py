"""The noise ceiling (issue 25): how well the measurement predicts itself. Every pseudo-bulk
sample's cells are split into two halves (pgen-pseudobulk --half, perturbgen::halves), limma runs
on each half and the first half's DE is scored against the second's (workflow/rules/ceiling.smk).

* The halves against the cells, in pandas: the split recomputed here from its definition (cells
  ordered by SHA-256(seed, obs_id) within each sample, dealt alternately, the odd cell's half drawn
  per sample) gives two disjoint halves covering every cell, sizes within one cell per sample; the
  workflow's half pseudo-bulks are exactly those cells' sums, and they add up to the truth's.
* The workflow on the demo config writes results/scores/ceiling.csv over the target pairs, and the
  ceiling's MRRMSE is below the zero prediction's (the demo's simulated effects are real: one
  half of the cells predicts the other better than "no effect" does).
"""
import hashlib
import re
import subprocess

import numpy as np
import pandas as pd
import pytest

from conftest import BIN_DIR, REPO, run
from test_de_stage import SNAKEMAKE, read_parquet

SAMPLE = ["cell_type", "plate_name", "well"]
PB_KEYS = ["cell_type", "plate_name", "well", "donor_id", "row", "sm_name", "sm_lincs_id", "SMILES", "control", "n_cells"]
# What the ceiling needs, and the zero route to compare it with.
TARGETS = ["results/scores/ceiling.csv", "results/scores/zero.csv"]


def snakemake(workdir, *args, config=()):
    return run([SNAKEMAKE, *args, "--snakefile", REPO / "workflow" / "Snakefile", "-d", workdir,
                "--configfile", REPO / "config" / "config.yaml", "--config", f"bin_dir={BIN_DIR}", *config], cwd=workdir)


@pytest.fixture(scope="module")
def ceiling_run(tmp_path_factory):
    """The demo config run up to the ceiling's and the zero route's scores (not every route)."""
    d = tmp_path_factory.mktemp("ceiling")
    snakemake(d, *TARGETS, "-c2", "--quiet", "rules", "progress")
    return d


def planned_rules(workdir, *config):
    """The rules of a dry run of `all`."""
    out = snakemake(workdir, "all", "-n", "--quiet", "rules", config=config).stdout
    return set(re.findall(r"^(\w+)\s+\d+$", out.split("Job stats:", 1)[1], flags=re.M)) - {"total"}


# --- the split, from its definition --------------------------------------------------------------

def _hash(seed, tag, parts):
    h = hashlib.sha256(seed.to_bytes(8, "little") + bytes([tag]) + b"\0".join(p.encode() for p in parts))
    return int.from_bytes(h.digest()[:8], "little")


def halves(obs_sets, seed):
    """{obs set index: Series 'first'/'second' by row} for pooled obs tables."""
    cells = pd.concat([o[SAMPLE + ["obs_id"]].astype(str).assign(set=s, pos=np.arange(len(o))) for s, o in enumerate(obs_sets)],
                      ignore_index=True)
    cells["hash"] = [_hash(seed, 0, [i]) for i in cells["obs_id"]]
    cells = cells.sort_values(SAMPLE + ["hash", "set", "pos"])
    rank = cells.groupby(SAMPLE, sort=False).cumcount()
    offset = [(_hash(seed, 1, list(k)) & 1) for k in cells[SAMPLE].itertuples(index=False)]
    cells["half"] = np.where((rank + np.array(offset)) % 2 == 0, "first", "second")
    return cells


def pseudobulk(counts, obs, genes):
    """Counts (long: obs_id, gene, count) summed per sample, samples × genes, with n_cells."""
    key = obs[["obs_id"] + SAMPLE].astype(str)
    long = counts.astype({"obs_id": str, "gene": str}).merge(key, on="obs_id", validate="many_to_one")
    sums = long.groupby(SAMPLE + ["gene"])["count"].sum().unstack("gene", fill_value=0).reindex(columns=genes, fill_value=0)
    n = key.groupby(SAMPLE).size().rename("n_cells")
    return sums.reindex(n.index, fill_value=0).astype(float).join(n)


def indexed(pb):
    """A pseudo-bulk table indexed by sample, its gene columns and n_cells."""
    pb = pb.astype({c: str for c in SAMPLE})
    genes = [c for c in pb.columns if c not in PB_KEYS]
    return pb.set_index(SAMPLE)[genes + ["n_cells"]].sort_index(), genes


def test_halves_are_the_cells_split_in_two_and_sum_to_the_truth(ceiling_run):
    res = ceiling_run / "results"
    # The truth pseudo-bulk pools the training cells and the simulator's withheld target cells.
    sets = [("split/train_counts.parquet", "split/train_obs.parquet"), ("ingest_truth/counts.parquet", "ingest_truth/obs.parquet")]
    counts = [read_parquet(res / c) for c, _ in sets]
    obs = [read_parquet(res / o) for _, o in sets]
    truth, genes = indexed(read_parquet(res / "pseudobulk" / "truth.parquet"))
    first, _ = indexed(read_parquet(res / "pseudobulk" / "ceiling" / "first.parquet"))
    second, _ = indexed(read_parquet(res / "pseudobulk" / "ceiling" / "second.parquet"))

    cells = halves(obs, seed=0)
    ids = {h: set(cells.loc[cells["half"] == h, "obs_id"]) for h in ("first", "second")}
    assert not ids["first"] & ids["second"]
    assert ids["first"] | ids["second"] == set().union(*(set(o["obs_id"].astype(str)) for o in obs))
    assert len(ids["first"]) + len(ids["second"]) == sum(len(o) for o in obs)
    sizes = cells.groupby(SAMPLE + ["half"]).size().unstack("half", fill_value=0)
    assert (sizes["first"] - sizes["second"]).abs().max() <= 1
    assert (sizes["first"] > sizes["second"]).any() and (sizes["first"] < sizes["second"]).any(), "the odd cells all went to one half"

    for half, table in (("first", first), ("second", second)):
        mine = [pseudobulk(c, o[o["obs_id"].astype(str).isin(ids[half])], genes) for c, o in zip(counts, obs)]
        expected = pd.concat(mine).groupby(level=SAMPLE).sum().sort_index()
        pd.testing.assert_frame_equal(table, expected[table.columns], check_dtype=False, check_exact=True, obj=f"half {half}")

    # Together the halves are the truth pseudo-bulk, exactly; a one-cell sample is in one half only.
    both = first.add(second, fill_value=0).reindex(truth.index)
    assert both.notna().all().all(), "a truth sample in neither half"
    pd.testing.assert_frame_equal(both, truth.astype(float), check_dtype=False, check_exact=True)
    assert len(first) + len(second) > len(truth) and 0 < first["n_cells"].sum() < truth["n_cells"].sum()


def test_the_seed_and_the_half_choose_the_cells(ceiling_run, tmp_path):
    """The workflow's half is what pgen-pseudobulk gives on its own (deterministic); another
    seed gives another split; a bad --half, or a seed without --half, is a one-line error."""
    res = ceiling_run / "results"
    exe = BIN_DIR / "pgen-pseudobulk"
    inputs = ["--counts", res / "split/train_counts.parquet", "--obs", res / "split/train_obs.parquet",
              "--counts", res / "ingest_truth/counts.parquet", "--obs", res / "ingest_truth/obs.parquet"]
    run([exe, *inputs, "--half", "first", "--params", '{"seed": 0}', "--out", tmp_path / "seed0.parquet"])
    run([exe, *inputs, "--half", "first", "--set", "seed=1", "--out", tmp_path / "seed1.parquet"])
    workflow_half = read_parquet(res / "pseudobulk" / "ceiling" / "first.parquet")
    pd.testing.assert_frame_equal(read_parquet(tmp_path / "seed0.parquet"), workflow_half)
    assert not read_parquet(tmp_path / "seed1.parquet").equals(workflow_half)
    for bad, message in ((["--half", "third"], "expected first or second"),
                         (["--set", "seed=1"], "need --half"),
                         (["--half", "first", "--set", "seeed=1"], "unknown field `seeed`")):
        proc = subprocess.run([str(a) for a in [exe, *inputs, *bad, "--out", tmp_path / "bad.parquet"]], capture_output=True, text=True)
        assert proc.returncode == 1 and message in proc.stderr, (bad, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert not (tmp_path / "bad.parquet").exists()


def mrrmse(table):
    rows = pd.read_csv(table)
    overall = rows[(rows["cell_type"] == "ALL") & (rows["sm_name"] == "MEAN")]
    assert len(overall) == 1, rows
    return float(overall["rmse"].iloc[0]), rows[rows["cell_type"] != "ALL"]


def test_the_ceiling_scores_the_target_pairs_below_zero(ceiling_run):
    scores = ceiling_run / "results" / "scores"
    ceiling, ceiling_rows = mrrmse(scores / "ceiling.csv")
    zero, zero_rows = mrrmse(scores / "zero.csv")
    assert (scores / "ceiling.png").stat().st_size > 1000
    # The same pairs as every route: the targets.
    targets = pd.read_csv(ceiling_run / "results" / "split" / "targets.csv")
    pairs = lambda df: set(zip(df["cell_type"], df["sm_name"]))  # noqa: E731
    assert pairs(ceiling_rows) == pairs(zero_rows) == pairs(targets)
    assert np.isfinite(ceiling_rows["rmse"]).all() and (ceiling_rows["rmse"] > 0).all()
    assert ceiling == pytest.approx(ceiling_rows["rmse"].mean(), rel=1e-12)
    assert 0 < ceiling < zero, (ceiling, zero)
    # The halves' DE are not the truth's: the score compares two noisy measurements.
    first = read_parquet(ceiling_run / "results" / "de" / "ceiling" / "first.parquet")
    truth = read_parquet(ceiling_run / "results" / "de" / "truth.parquet")
    assert len(first) == len(truth) and not first.equals(truth)


def test_the_switch_plans_the_ceiling_or_not(tmp_path):
    """ceiling.enabled: the plan of `all` in a fresh folder has the ceiling's score and the
    halves' DE tables (the jobs before them come once the split checkpoint names the target cell
    types), or none of the ceiling's jobs."""
    on = planned_rules(tmp_path)
    assert {"de_half", "ceiling_score"} <= on, on
    off = planned_rules(tmp_path, "ceiling={enabled: false}")
    assert "score" in off and not off & {"pseudobulk_half", "limma_half", "de_half", "ceiling_score"}, off
