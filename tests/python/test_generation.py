"""The generation route (issue 13) on the demo workflow's outputs: size forests cover every target
group, generated routes on the leaderboard, replicate runs, determinism, the figures."""
import subprocess

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, _binary, run

KEYS = ["cell_type", "sm_name", "sm_lincs_id", "SMILES", "control"]
CONTROLS = {"Dimethyl Sulfoxide", "Dabrafenib", "Belinostat"}
# The shipped generate settings (pgen-generate's defaults too; config/config.yaml repeats them).
# The shipped config's generate settings: chosen on the generative inner hold-out (the workflow's
# pick for the model is passed with --calibration).
SHIPPED_GENERATE = ["--set", "emit=auto", "--set", "reference=auto", "--set", "source=auto", "--set", "inner_holdout=true"]


@pytest.fixture(scope="module")
def res(demo_workflow):
    return demo_workflow / "results"


def predicted_sizes(res):
    sizes = pd.read_csv(res / "generate" / "sizes.csv")
    return sizes[sizes.source == "predicted"].reset_index(drop=True)


def test_sizes_cover_every_target_in_every_plate_where_its_compound_was_applied(res):
    sizes = predicted_sizes(res)
    targets = pd.read_csv(res / "split" / "targets.csv")
    obs = pd.read_parquet(res / "split" / "train_obs.parquet")
    for t in targets.itertuples():
        wells = set(map(tuple, obs.loc[obs.sm_name == t.sm_name, ["plate_name", "well"]].drop_duplicates().values))
        got = sizes[(sizes.cell_type == t.cell_type) & (sizes.sm_name == t.sm_name)]
        assert set(map(tuple, got[["plate_name", "well"]].values)) == wells, (t.cell_type, t.sm_name)
    assert (sizes.n_cells >= 5).all() and (sizes.n_cells == sizes.n_cells.round()).all()
    assert (sizes.scale >= 1).all()


def test_size_forests_predict_the_withheld_groups(res, demo_workflow):
    """Against the simulator's withheld test cells (independent truth): the predicted cells per
    target group track the real ones."""
    test_obs = pd.read_csv(demo_workflow / "results" / "simulated" / "truth" / "adata_test_obs_meta.csv")
    real = test_obs.groupby(["cell_type", "sm_name", "plate_name", "well"]).size().rename("real")
    sizes = predicted_sizes(res).set_index(["cell_type", "sm_name", "plate_name", "well"])
    both = sizes.join(real, how="inner")
    assert len(both) >= 0.9 * len(sizes), "the predicted groups are the withheld groups"
    r = np.corrcoef(both.n_cells, both.real)[0, 1]
    assert r > 0.5, f"correlation of predicted and real group sizes {r:.3f}"


def test_a_target_whose_compound_was_never_applied_is_refused(res, tmp_path):
    targets = pd.read_csv(res / "split" / "targets.csv")
    bad = pd.concat([targets, pd.DataFrame([{"id": 10**6, "cell_type": "B cells", "sm_name": "Neverapplied"}])])
    bad.to_csv(tmp_path / "targets.csv", index=False)
    proc = subprocess.run([str(c) for c in [_binary("pgen-sizes"), "--counts", res / "split" / "train_counts.parquet",
                                            "--obs", res / "split" / "train_obs.parquet", "--targets", tmp_path / "targets.csv",
                                            "--out", tmp_path / "s.csv", "--plot", tmp_path / "s.png"]],
                          capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    assert f"row {len(bad)}: compound `Neverapplied`" in proc.stderr and "never applied in a plate layout" in proc.stderr
    assert not (tmp_path / "s.csv").exists()


def test_generative_routes_are_scored_next_to_the_others(res):
    scores = pd.read_csv(res / "scores" / "scores.csv")
    routes = set(scores.route)
    for r in ["zero", "xgb", "dgd", "dgd_avg", "nbvae", "nbvae_avg", "xgb_dgd"]:
        assert r in routes, routes
    assert scores.mrrmse.notna().all() and (scores.mrrmse > 0).all()


def test_replicates_report_and_combination(res):
    """dgd_avg is the mean of the five runs' tables; the report's last row scores it."""
    rep = pd.read_csv(res / "scores" / "replicates" / "dgd.csv")
    assert list(rep.n_runs) == [1, 2, 3, 4, 5]
    runs = [pd.read_parquet(res / "generate" / "dgd" / f"run{k}.parquet") for k in range(5)]
    genes = [c for c in runs[0].columns if c not in KEYS]
    mean = sum(r[genes].values for r in runs) / 5
    avg = pd.read_parquet(res / "predictions" / "dgd_avg.parquet")
    assert np.allclose(avg[genes].values, mean, rtol=0, atol=1e-12)
    single = pd.read_parquet(res / "predictions" / "dgd.parquet")
    assert np.array_equal(single[genes].values, runs[0][genes].values)
    scores = pd.read_csv(res / "scores" / "scores.csv").set_index("route").mrrmse
    assert abs(rep.mrrmse.iloc[-1] - scores["dgd_avg"]) < 1e-5 and abs(rep.mrrmse.iloc[0] - scores["dgd"]) < 1e-5
    # Different seeds give different runs; the report's spread is theirs.
    assert not np.array_equal(runs[0][genes].values, runs[1][genes].values)
    sd2 = np.abs(runs[0][genes].values - runs[1][genes].values).mean() / np.sqrt(2)
    assert abs(rep.run_sd.iloc[1] - sd2) < 1e-5
    # (the CSV holds 6 decimals)
    assert np.allclose(rep.mean_se.iloc[1:], rep.run_sd.iloc[1:] / np.sqrt(rep.n_runs.iloc[1:]), rtol=0, atol=2e-6)


def test_same_seed_same_prediction_bytes(res, demo_workflow, tmp_path):
    """pgen-generate run 0 again, by hand, gives the workflow's bytes."""
    cmd = [_binary("pgen-generate"), "--model", res / "models" / "dgd", "--sizes", res / "generate" / "sizes.csv",
           "--pseudobulk", res / "pseudobulk" / "train.parquet", "--targets", res / "split" / "targets.csv",
           "--cells-counts", res / "filter" / "counts.parquet", "--cells-obs", res / "filter" / "obs.parquet",
           *SHIPPED_GENERATE, "--calibration", res / "inner" / "generate" / "dgd" / "calibration.json",
           "--script", REPO / "scripts" / "limma_de.R", "--run", "0", "--threads", "1",
           "--out", tmp_path / "run0.parquet", "--out-pseudobulk", tmp_path / "run0_pb.parquet"]
    run(cmd)
    assert (tmp_path / "run0_pb.parquet").read_bytes() == (res / "generate" / "dgd" / "run0_pseudobulk.parquet").read_bytes()
    assert (tmp_path / "run0.parquet").read_bytes() == (res / "generate" / "dgd" / "run0.parquet").read_bytes()


def test_the_target_cell_types_control_wells_are_listed_as_observed(res):
    sizes = pd.read_csv(res / "generate" / "sizes.csv")
    observed = sizes[sizes.source == "observed"]
    targets = pd.read_csv(res / "split" / "targets.csv")
    assert set(observed.sm_name) == {"Dimethyl Sulfoxide"}
    assert set(observed.cell_type) == set(targets.cell_type)
    obs = pd.read_parquet(res / "split" / "train_obs.parquet")
    real = obs[obs.sm_name == "Dimethyl Sulfoxide"].groupby(["cell_type", "plate_name", "well"]).size()
    for r in observed.itertuples():
        assert r.n_cells == real[(r.cell_type, r.plate_name, r.well)]


def test_generated_groups_have_the_predicted_sizes(res):
    """With a generated reference (the demo's pick on the inner hold-out: generated_controls)
    every group of the size table is generated, the target cell types' control wells too, each
    with its size; counts with emit sample, NB means (not all whole numbers) with emit mean."""
    import json
    pick = json.loads((res / "inner" / "generate" / "dgd" / "calibration.json").read_text())
    assert pick["reference"] in ("generated", "generated_controls"), pick
    sizes = pd.read_csv(res / "generate" / "sizes.csv")
    pb = pd.read_parquet(res / "generate" / "dgd" / "run0_pseudobulk.parquet")
    assert list(zip(pb.cell_type, pb.sm_name, pb.plate_name, pb.well)) == list(zip(sizes.cell_type, sizes.sm_name, sizes.plate_name, sizes.well))
    assert list(pb.n_cells) == list(sizes.n_cells.round().astype(int))
    genes = [c for c in pb.columns if c not in {"cell_type", "plate_name", "well", "donor_id", "row", "sm_name", "sm_lincs_id", "SMILES", "control", "n_cells"}]
    values = pb[genes].values
    assert (values.sum(axis=1) > 0).all()
    assert (values >= 0).all()
    assert (values == np.round(values)).all() == (pick["emit"] == "sample"), pick


def test_generated_cells_are_written_and_sum_to_the_groups(res, tmp_path):
    """--out-cells (generate.write_cells) with emit sample: the cells, pseudo-bulked again by
    pgen-pseudobulk, are the run's group samples; each group has its predicted number of cells,
    with the group's metadata; with emit mean (not counts) it is a one-line error."""
    base = [_binary("pgen-generate"), "--model", res / "models" / "dgd", "--sizes", res / "generate" / "sizes.csv",
            "--pseudobulk", res / "pseudobulk" / "train.parquet", "--targets", res / "split" / "targets.csv",
            "--script", REPO / "scripts" / "limma_de.R", "--run", "1", "--threads", "2",
            "--set", "source=prior", "--set", "reference=real", "--set", "emit=sample"]
    cells, obs_path = tmp_path / "cells.parquet", tmp_path / "cells_obs.parquet"
    run([*base, "--out", tmp_path / "run1.parquet", "--out-pseudobulk", tmp_path / "pb.parquet",
         "--out-cells", cells, "--out-cells-obs", obs_path])
    long = pd.read_parquet(cells)
    assert list(long.columns[:3]) == ["obs_id", "gene", "count"]
    assert (long["count"] > 0).all() and (long["count"] == long["count"].round()).all()
    obs = pd.read_parquet(obs_path)
    sizes = predicted_sizes(res)
    group_sizes = obs.groupby(["cell_type", "sm_name", "plate_name", "well"], observed=True).size()
    for r in sizes.itertuples():
        assert group_sizes[(r.cell_type, r.sm_name, r.plate_name, r.well)] == int(r.n_cells), r
    # Pseudo-bulked again, the cells are the run's groups.
    run([_binary("pgen-pseudobulk"), "--counts", cells, "--obs", obs_path, "--out", tmp_path / "again.parquet"])
    keys = ["cell_type", "sm_name", "plate_name", "well"]
    pb = pd.read_parquet(tmp_path / "pb.parquet").set_index(keys).sort_index()
    again = pd.read_parquet(tmp_path / "again.parquet").set_index(keys).sort_index()
    genes = [c for c in pb.columns if c not in {"donor_id", "row", "sm_lincs_id", "SMILES", "control", "n_cells"}]
    assert list(again.index) == list(pb.index)
    assert (again.n_cells.values == pb.n_cells.values).all()
    np.testing.assert_array_equal(again[genes].to_numpy(), pb[genes].to_numpy())

    proc = subprocess.run([str(c) for c in [*base[:-2], "--set", "emit=mean", "--out", tmp_path / "x.parquet", "--out-cells", tmp_path / "c.parquet",
                                            "--out-cells-obs", tmp_path / "o.parquet"]], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "generate.emit" in proc.stderr and "not counts" in proc.stderr, proc.stderr
    assert not (tmp_path / "x.parquet").exists() and not (tmp_path / "c.parquet").exists()
