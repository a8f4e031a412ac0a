"""Reliability under hostile input (issue 11): every bad-input class through each stage it
applies to — exit 1, one line naming the file and row/column or key, nothing left behind —;
kills between the renames of an output set (fault injection in the atomic writer); mismatched
checkpoint pairs; a full disk (a small tmpfs, when this runs as root).

With PGEN_FUZZ_TABLE=FILE the case table (stage, case, exit status, message) is written there."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import REPO, _binary, run, simulate

SCRIPT = REPO / "scripts" / "limma_de.R"
NK = "NK cells"
DMSO = "Dimethyl Sulfoxide"
RESULTS = []


def pgen(name):
    return _binary(name)


def quiet_env(**extra):
    return {**os.environ, "RUST_LOG": "error", **{k: str(v) for k, v in extra.items()}}


def leftovers(folder):
    """Everything in `folder` (hidden temporaries included)."""
    folder = Path(folder)
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def fx(ingest_dir, sim_dir, tmp_path_factory):
    """A small real set: ingest output, its pseudo-bulk, one cell type's DE, the targets."""
    d = tmp_path_factory.mktemp("reliability")
    pb = d / "pb.parquet"
    run([pgen("pgen-pseudobulk"), "--counts", ingest_dir / "counts.parquet", "--obs", ingest_dir / "obs.parquet", "--out", pb])
    de = d / "de.parquet"
    run([pgen("pgen-limma"), "--pseudobulk", pb, "--cell-type", NK, "--script", SCRIPT, "--out", de])
    obs = pq.read_table(ingest_dir / "obs.parquet").to_pandas()
    de_df = pq.read_table(de).to_pandas()
    compound = sorted(set(de_df.sm_name) - {DMSO})[0]
    (d / "val.txt").write_text("\n".join(obs.obs_id.iloc[:20]) + "\n")
    return {"val": d / "val.txt",
        "dir": d, "counts": ingest_dir / "counts.parquet", "obs": ingest_dir / "obs.parquet", "pb": pb, "de": de,
        "targets": sim_dir / "id_map.csv", "compound": compound, "n_cells": len(obs),
        "gene": [c for c in de_df.columns if c not in ("cell_type", "sm_name", "sm_lincs_id", "SMILES", "control")][0],
    }


def with_value(src, dst, column, row, value):
    """A copy of parquet `src` with one cell of `column` replaced (None = null)."""
    table = pq.read_table(src)
    i = table.schema.get_field_index(column)
    field = table.schema.field(i)
    values = table.column(i).to_pylist()
    values[row] = value
    kind = field.type.value_type if pa.types.is_dictionary(field.type) else field.type
    table = table.set_column(i, pa.field(column, kind, nullable=True), pa.array(values, type=kind))
    pq.write_table(table, dst)
    return dst


def without_column(src, dst, column):
    table = pq.read_table(src)
    pq.write_table(table.drop_columns([column]), dst)
    return dst


def first_rows(src, dst, n):
    pq.write_table(pq.read_table(src).slice(0, n), dst)
    return dst


# ----------------------------------------------------------------------------- the cases
def stage_cmd(stage, fx, out, **inputs):
    """The command line of `stage` on the fixture, with some inputs replaced."""
    i = {"counts": fx["counts"], "obs": fx["obs"], "pb": fx["pb"], "de": fx["de"], "targets": fx["targets"], **inputs}
    extra = [str(a) for a in inputs.get("extra", [])]
    if stage == "pseudobulk":
        return [pgen("pgen-pseudobulk"), "--counts", i["counts"], "--obs", i["obs"], "--out", out / "pb.parquet", *extra]
    if stage == "limma":
        return [pgen("pgen-limma"), "--pseudobulk", i["pb"], "--cell-type", NK, "--script", inputs.get("script", SCRIPT),
                "--out", out / "de.parquet", *extra]
    if stage == "forest":
        return [pgen("pgen-forest"), "--pseudobulk", i["pb"], "--targets", i["targets"], "--script", SCRIPT,
                "--set", "n_trees=2", "--out", out / "forest.parquet", *extra]
    if stage == "xgb":
        return [pgen("pgen-xgb"), "--de-train", i["de"], "--targets", i["targets"], "--set", "rounds=1",
                "--out", out / "xgb.parquet", *extra]
    if stage == "score":
        return [pgen("pgen-score"), "--prediction", i["de"], "--truth", inputs.get("truth", fx["de"]),
                "--out-table", out / "scores.csv", *extra]
    if stage == "filter":
        return [pgen("pgen-filter"), "--counts", i["counts"], "--obs", i["obs"], "--out-counts", out / "c.parquet",
                "--out-obs", out / "o.parquet", "--removed", out / "removed.csv", *extra]
    if stage == "split":
        if "mode=holdout" not in extra:
            extra += ["--id-map", str(i["targets"])]
        return [pgen("pgen-split"), "--counts", i["counts"], "--obs", i["obs"], *extra,
                "--out-train-counts", out / "tc.parquet", "--out-train-obs", out / "to.parquet",
                "--out-holdout-counts", out / "hc.parquet", "--out-holdout-obs", out / "ho.parquet",
                "--out-targets", out / "targets.csv", "--out-validation", out / "validation.txt"]
    if stage == "train":
        return [pgen("pgen-train"), "--model", "nbvae", "--counts", i["counts"], "--obs", i["obs"],
                "--validation", fx["val"], "--out-dir", out / "model", "--set", "common.max_epochs=1", "--set", "common.min_epochs=1", *extra]
    if stage == "ingest":
        return [pgen("pgen-ingest"), "--counts", inputs["raw_counts"], "--obs", inputs["raw_obs"],
                "--out-counts", out / "counts.parquet", "--out-obs", out / "obs.parquet", *extra]
    if stage == "simulate":
        return [pgen("pgen-simulate"), "--set", "preset=demo", "--out", out / "sim", *extra]
    raise ValueError(stage)


def empty_id_map(p):
    p.write_text("id,cell_type,sm_name\n")
    return p


def garbage(p):
    p.write_bytes(b"this is not a parquet file\n" * 10)
    return p


def truncated(src, p):
    data = Path(src).read_bytes()
    p.write_bytes(data[: len(data) // 2])
    return p


# (id, stages, make inputs(fx, tmp) -> dict, message fragments)
CASES = [
    ("missing file", ["pseudobulk", "filter", "split", "train"], lambda fx, t: {"counts": t / "nope.parquet"},
     ["nope.parquet", "No such file"]),
    ("not parquet", ["pseudobulk", "filter", "split", "train"], lambda fx, t: {"counts": garbage(t / "junk.parquet")},
     ["junk.parquet", "not a readable Parquet file"]),
    ("truncated parquet", ["pseudobulk", "filter"], lambda fx, t: {"counts": truncated(fx["counts"], t / "half.parquet")},
     ["half.parquet", "not a readable Parquet file"]),
    ("missing column", ["pseudobulk", "filter", "split", "train"], lambda fx, t: {"counts": without_column(fx["counts"], t / "c.parquet", "count")},
     ["c.parquet", "missing required column `count`"]),
    ("null count", ["pseudobulk", "filter", "train"], lambda fx, t: {"counts": with_value(fx["counts"], t / "c.parquet", "count", 3, None)},
     ["c.parquet", "row 4", "column `count`", "null"]),
    ("negative count", ["pseudobulk", "split"], lambda fx, t: {"counts": with_value(fx["counts"], t / "c.parquet", "count", 5, -2)},
     ["c.parquet", "row 6", "column `count`", "-2"]),
    ("null cell_type in obs", ["pseudobulk", "filter", "train"], lambda fx, t: {"obs": with_value(fx["obs"], t / "o.parquet", "cell_type", 2, None)},
     ["o.parquet", "row 3", "column `cell_type`", "null"]),
    ("empty cell_type in obs", ["pseudobulk", "split"], lambda fx, t: {"obs": with_value(fx["obs"], t / "o.parquet", "cell_type", 2, "")},
     ["o.parquet", "row 3", "column `cell_type`", "an empty string"]),
    ("obs of other cells than the counts", ["pseudobulk", "filter", "split", "train"], lambda fx, t: {"obs": first_rows(fx["obs"], t / "o.parquet", 100)},
     ["counts.parquet", "was written for other cells than the 100 of the obs table"]),
    ("null count in pseudo-bulk", ["limma", "forest"], lambda fx, t: {"pb": with_value(fx["pb"], t / "pb.parquet", fx["gene"], 1, None)},
     ["pb.parquet", "row 2", "null"]),
    ("NaN count in pseudo-bulk", ["limma", "forest"], lambda fx, t: {"pb": with_value(fx["pb"], t / "pb.parquet", fx["gene"], 1, float("nan"))},
     ["pb.parquet", "row 2", "a finite number", "NaN"]),
    ("infinite count in pseudo-bulk", ["limma"], lambda fx, t: {"pb": with_value(fx["pb"], t / "pb.parquet", fx["gene"], 0, float("inf"))},
     ["pb.parquet", "row 1", "a finite number", "inf"]),
    ("null sm_name in pseudo-bulk", ["limma", "forest"], lambda fx, t: {"pb": with_value(fx["pb"], t / "pb.parquet", "sm_name", 0, None)},
     ["pb.parquet", "row 1", "column `sm_name`", "null"]),
    ("n_cells 0 in pseudo-bulk", ["limma"], lambda fx, t: {"pb": with_value(fx["pb"], t / "pb.parquet", "n_cells", 0, 0)},
     ["pb.parquet", "row 1", "column `n_cells`"]),
    ("design holding R code", ["limma", "forest"], lambda fx, t: {"extra": ["--section", """de={"design": "~0+Rpert+system('touch /tmp/pgen-pwned')"}"""]},
     ["de.design", "character `(` is not allowed"]),
    ("design naming a missing column", ["limma", "forest"], lambda fx, t: {"extra": ["--section", 'de={"design": "~0+Rpert+batch"}']},
     ["de.design", "`batch` is not a sample column"]),
    ("unknown negative control", ["limma"], lambda fx, t: {"extra": ["--section", 'de={"negative_control": "Water"}']},
     ["unknown negative control `Water`"]),
    ("missing --script", ["limma"], lambda fx, t: {"script": t / "no_such.R"},
     ["no_such.R", "no such R script"]),
    ("null key in de_train", ["xgb", "score"], lambda fx, t: {"de": with_value(fx["de"], t / "de.parquet", "sm_name", 1, None)},
     ["de.parquet", "row 2", "column `sm_name`", "null"]),
    ("NaN in de_train", ["xgb", "score"], lambda fx, t: {"de": with_value(fx["de"], t / "de.parquet", fx["gene"], 0, float("nan"))},
     ["de.parquet", "row 1", "a finite number"]),
    ("infinite value in de_train", ["xgb"], lambda fx, t: {"de": with_value(fx["de"], t / "de.parquet", fx["gene"], 0, float("-inf"))},
     ["de.parquet", "row 1", "-inf"]),
    ("unknown XGBoost parameter", ["xgb"], lambda fx, t: {"extra": ["--set", "params={etaa: 1}"]},
     ["xgb.params.etaa: not an XGBoost 1.6 parameter"]),
    ("min_cells above every compound", ["filter"], lambda fx, t: {"extra": ["--set", "min_cells=1000000"]},
     ["filter.min_cells: 1000000 drops every compound"]),
    ("dropping the negative control", ["filter"], lambda fx, t: {"extra": ["--set", f"drop_compounds=[{DMSO}]"]},
     ["filter.drop_compounds", "is the negative control"]),
    ("dropping an unknown compound", ["filter"], lambda fx, t: {"extra": ["--set", "drop_compounds=[Nope]"]},
     ["filter.drop_compounds: `Nope` is not a compound"]),
    ("the same hold-out pair twice", ["split"], lambda fx, t: {"extra": ["--set", "mode=holdout", "--set", f"holdout.pairs=['{NK}|{fx['compound']}', '{NK}|{fx['compound']}']"]},
     ["is listed twice"]),
    ("a hold-out pair without cells", ["split"], lambda fx, t: {"extra": ["--set", "mode=holdout", "--set", f"holdout.pairs=['{NK}|Nope']"]},
     ["hold-out pair (NK cells, Nope) has no cells"]),
    ("min_epochs above max_epochs", ["train"], lambda fx, t: {"extra": ["--set", "common.min_epochs=5", "--set", "common.max_epochs=2"]},
     ["min_epochs: 5 is more than max_epochs 2"]),
    ("cells 0", ["simulate"], lambda fx, t: {"extra": ["--set", "cells=0"]},
     ["simulate.cells", "must be at least 1"]),
    # Issue 23, point 6: messages that came late, blamed the wrong file or did not come at all.
    ("compounds leaving no test pair", ["simulate"], lambda fx, t: {"extra": ["--set", "compounds=4"]},
     ["simulate.compounds", "leaving no test pair"]),
    ("a value whose square overflows", ["score"], lambda fx, t: {"de": with_value(fx["de"], t / "de.parquet", fx["gene"], 0, 1e308)},
     ["de.parquet", "makes the RMSE overflow"]),
    ("an empty id_map", ["split"], lambda fx, t: {"targets": empty_id_map(t / "id_map.csv")},
     ["id_map.csv: no rows", "pairs to predict"]),
]


def expand():
    for case_id, stages, make, needles in CASES:
        for stage in stages:
            yield pytest.param(stage, make, needles, id=f"{stage}: {case_id}")


def refused(cmd, out, needles, case="", stage=""):
    """Runs `cmd`: exit 1, one stderr line with every needle, nothing under `out`."""
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=quiet_env(), timeout=300)
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    RESULTS.append((stage, case, proc.returncode, lines[-1] if lines else ""))
    assert proc.returncode == 1, f"exit {proc.returncode}\n{proc.stderr[-3000:]}"
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    for n in needles:
        assert n in lines[0], f"`{n}` not in: {lines[0]}"
    assert leftovers(out) == [], f"left behind: {leftovers(out)}"
    return lines[0]


@pytest.mark.parametrize("stage,make,needles", list(expand()))
def test_bad_input_is_refused_in_one_line_leaving_nothing(stage, make, needles, fx, tmp_path, request):
    inputs_dir = tmp_path / "in"
    inputs_dir.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    cmd = stage_cmd(stage, fx, out, **make(fx, inputs_dir))
    refused(cmd, out, needles, case=request.node.callspec.id.split(": ", 1)[1], stage=stage)
    assert not Path("/tmp/pgen-pwned").exists(), "the design's R code ran"


def test_score_without_truth_or_id_map_is_refused(fx, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    refused([pgen("pgen-score"), "--prediction", fx["de"]], out, ["nothing to do: give --truth"],
            case="a prediction without a truth or an id_map", stage="score")


def test_the_same_path_for_two_outputs_is_refused(sim_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    cmd = [pgen("pgen-ingest"), "--counts", sim_dir / "adata_train.parquet", "--obs", sim_dir / "adata_obs_meta.csv",
           "--genes", sim_dir / "genes.txt", "--out-counts", out / "x", "--out-obs", out / "x"]
    refused(cmd, out, ["x: given for two different outputs"], case="--out-counts x --out-obs x", stage="ingest")


def test_a_huge_thread_count_is_capped(fx, tmp_path):
    proc = subprocess.run([str(c) for c in stage_cmd("filter", fx, tmp_path, extra=["--threads", "100000"])],
                          capture_output=True, text=True, env={**os.environ, "RUST_LOG": "warn"}, timeout=120)
    RESULTS.append(("filter", "--threads 100000", proc.returncode, (proc.stderr.strip().splitlines() or [""])[0]))
    assert proc.returncode == 0, proc.stderr
    assert f"--threads 100000: only {os.cpu_count()} cores available" in proc.stderr or "cores available, using" in proc.stderr


# ----------------------------------------------------------------------------- kills
INGEST_OUTPUTS = ["counts.parquet", "obs.parquet", "summary.json", "qc.png"]


def ingest_cmd(sim_dir, out):
    return [pgen("pgen-ingest"), "--counts", sim_dir / "adata_train.parquet", "--obs", sim_dir / "adata_obs_meta.csv",
            "--genes", sim_dir / "genes.txt", "--out-counts", out / "counts.parquet", "--out-obs", out / "obs.parquet",
            "--summary", out / "summary.json", "--qc-plot", out / "qc.png"]


@pytest.fixture(scope="module")
def sim_dir_seed1(simulate_bin, tmp_path_factory):
    """Another simulation: its ingest outputs differ from sim_dir's in every file."""
    return simulate(simulate_bin, tmp_path_factory.mktemp("sim_seed1"), seed=1)


def comparable(name, data):
    """A file's content without what differs between two runs of the same inputs (run times and
    memory in summary.json / checkpoint JSON histories)."""
    if not name.endswith(".json"):
        return data
    doc = json.loads(data)
    for key in [k for k in doc if "seconds" in k or "rss" in k]:
        del doc[key]
    for epoch in doc.get("history", []):
        epoch.pop("seconds", None)
    return doc


def snapshot(folder, names=INGEST_OUTPUTS):
    return {n: comparable(n, (folder / n).read_bytes()) for n in names}


@pytest.mark.parametrize("after", [1, 2, 3])
def test_a_kill_between_renames_never_shows_half_a_set(sim_dir, sim_dir_seed1, tmp_path, after):
    """ingest's four outputs are one set: kill -9 (injected) after `after` renames; the next
    perturbgen reader of the folder completes the commit, so it reads the new set whole."""
    old_dir, new_dir, out = tmp_path / "old", tmp_path / "new", tmp_path / "out"
    run(ingest_cmd(sim_dir, old_dir))
    run(ingest_cmd(sim_dir_seed1, new_dir))
    shutil.copytree(old_dir, out)
    proc = subprocess.run([str(c) for c in ingest_cmd(sim_dir_seed1, out)], capture_output=True, text=True,
                          env=quiet_env(PGEN_FAULT_KILL_AFTER_RENAMES=after))
    assert proc.returncode == -9, proc.stderr
    on_disk, new = snapshot(out), snapshot(new_dir)
    mixed = [n for n in INGEST_OUTPUTS if on_disk[n] == new[n]]
    assert len(mixed) == after, f"the kill landed after rename {after} of the set: new files {mixed}"
    journals = [n for n in leftovers(out) if n.startswith(".pgen-commit.")]
    assert journals, "the commit journal marks the set as committed but not yet complete"
    # Any perturbgen reader of the folder (here pgen-pseudobulk) first completes the commit.
    run([pgen("pgen-pseudobulk"), "--counts", out / "counts.parquet", "--obs", out / "obs.parquet", "--out", tmp_path / "pb.parquet"])
    assert snapshot(out) == snapshot(new_dir), "the reader sees the whole new set"
    assert leftovers(out) == sorted(INGEST_OUTPUTS), f"journal and staged files are gone: {leftovers(out)}"


def test_a_kill_before_the_commit_keeps_the_old_set_and_the_next_run_cleans_up(sim_dir, sim_dir_seed1, tmp_path):
    old_dir, out = tmp_path / "old", tmp_path / "out"
    run(ingest_cmd(sim_dir, old_dir))
    shutil.copytree(old_dir, out)
    proc = subprocess.run([str(c) for c in ingest_cmd(sim_dir_seed1, out)], capture_output=True, text=True,
                          env=quiet_env(PGEN_FAULT_KILL_AFTER_RENAMES=0))
    assert proc.returncode == -9, proc.stderr
    assert snapshot(out) == snapshot(old_dir), "killed before its commit: the previous set is intact"
    stale = [n for n in leftovers(out) if n not in INGEST_OUTPUTS]
    assert stale, "the killed writer's staged files are still there"
    run(ingest_cmd(sim_dir, out))
    assert leftovers(out) == sorted(INGEST_OUTPUTS), f"the next writer removed the stale temporaries: {leftovers(out)}"
    assert snapshot(out) == snapshot(old_dir)


@pytest.fixture(scope="module")
def train_inputs(ingest_dir, tmp_path_factory):
    """A small training set (the first 600 cells) for checkpoint tests."""
    d = tmp_path_factory.mktemp("train_inputs")
    obs = first_rows(ingest_dir / "obs.parquet", d / "obs_all.parquet", 600)
    run([pgen("pgen-filter"), "--counts", ingest_dir / "counts.parquet", "--obs", ingest_dir / "obs.parquet",
         "--out-counts", d / "all_counts.parquet", "--out-obs", d / "all_obs.parquet", "--removed", d / "removed.csv"])
    ids = pq.read_table(d / "all_obs.parquet").column("obs_id").to_pylist()[:600]
    (d / "val.txt").write_text("\n".join(ids[:40]) + "\n")
    return d, obs


def train_cmd(d, out, epochs, extra=()):
    return [pgen("pgen-train"), "--model", "dgd", "--counts", d / "all_counts.parquet", "--obs", d / "all_obs.parquet",
            "--validation", d / "val.txt", "--out-dir", out, "--set", f"common.max_epochs={epochs}",
            "--set", "common.min_epochs=1", "--set", "common.checkpoint_every=1", "--set", "common.batch_size=512",
            "--set", "common.decoder_hidden=[16,32]", *extra]


def test_resume_refuses_a_mismatched_checkpoint_pair(train_inputs, tmp_path):
    d, _ = train_inputs
    out = tmp_path / "model"
    # Commit 2 is epoch 1's `last` pair; killed before commit 3 (epoch 2's first save).
    proc = subprocess.run([str(c) for c in train_cmd(d, out, 2)], capture_output=True, text=True,
                          env=quiet_env(PGEN_FAULT_KILL_AFTER_RENAMES=0, PGEN_FAULT_AT_COMMIT=3))
    assert proc.returncode == -9, proc.stderr
    epoch1 = (out / "last.json").read_bytes()
    run(train_cmd(d, out, 2, ["--resume", "yes"]))
    assert json.loads((out / "last.json").read_bytes())["epoch"] == 2
    # A crash outside this library, or a hand copy, pairs epoch 2's tensors with epoch 1's JSON.
    (out / "last.json").write_bytes(epoch1)
    proc = subprocess.run([str(c) for c in train_cmd(d, out, 2, ["--resume", "yes"])], capture_output=True,
                          text=True, env=quiet_env())
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    RESULTS.append(("train", "--resume on a mismatched last.json/last.safetensors", proc.returncode, lines[-1] if lines else ""))
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert "last.json: does not belong to" in lines[0] and "last.safetensors" in lines[0], lines[0]
    # The model pair too (pgen-loglik reads it).
    shutil.copy2(out / "last.json", out / "model.json")
    proc = subprocess.run([str(c) for c in [pgen("pgen-loglik"), "--model", out, "--counts", d / "all_counts.parquet",
                                            "--obs", d / "all_obs.parquet", "--out-table", tmp_path / "ll.csv"]],
                          capture_output=True, text=True, env=quiet_env())
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    RESULTS.append(("loglik", "model.json of another save", proc.returncode, lines[-1] if lines else ""))
    assert proc.returncode == 1 and "model.json: does not belong to" in proc.stderr, proc.stderr
    assert not (tmp_path / "ll.csv").exists()


def test_a_kill_inside_a_checkpoint_write_resumes_to_the_same_model(train_inputs, tmp_path):
    """kill -9 after the first rename of epoch 1's `last` pair (commit 2; commit 1 is the model
    pair), then --resume: the pair is completed, training goes on, and the tensors are
    byte-identical to an uninterrupted run's."""
    d, _ = train_inputs
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    run(train_cmd(d, whole, 3))
    proc = subprocess.run([str(c) for c in train_cmd(d, killed, 3)], capture_output=True, text=True,
                          env=quiet_env(PGEN_FAULT_KILL_AFTER_RENAMES=1, PGEN_FAULT_AT_COMMIT=2))
    assert proc.returncode == -9, proc.stderr
    assert any(n.startswith(".pgen-commit.") for n in leftovers(killed))
    run(train_cmd(d, killed, 3, ["--resume", "yes"]))
    names = ["model.safetensors", "model.json", "last.safetensors", "last.json"]
    assert snapshot(killed, names) == snapshot(whole, names)
    assert not [n for n in leftovers(killed) if n.startswith(".")], leftovers(killed)


def test_model_files_follow_the_umask(train_inputs, tmp_path):
    d, _ = train_inputs
    out = tmp_path / "model"
    old = os.umask(0o022)
    try:
        run(train_cmd(d, out, 1))
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()}
    assert modes and all(m == 0o644 for m in modes.values()), modes


# ----------------------------------------------------------------------------- full disk
@pytest.fixture
def small_disk(tmp_path):
    """A 16 MB tmpfs (needs root, as in CI; skipped otherwise)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False)


def test_disk_full_during_a_stage_keeps_the_previous_outputs(sim_dir, small_disk, tmp_path):
    """ingest's outputs (~21 MB on the demo) do not fit 16 MB: exit 1 naming the output and the
    cause, the previous (smaller) outputs intact, no temporaries left."""
    out = small_disk / "ingest"
    out.mkdir()
    previous = {n: f"previous {n}".encode() for n in INGEST_OUTPUTS}
    for n, b in previous.items():
        (out / n).write_bytes(b)
    proc = subprocess.run([str(c) for c in ingest_cmd(sim_dir, out)], capture_output=True, text=True, env=quiet_env())
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    RESULTS.append(("ingest", "disk full (16 MB tmpfs)", proc.returncode, lines[-1] if lines else ""))
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert "No space left on device" in lines[0] and ".staged" not in lines[0] and ".partial" not in lines[0], lines[0]
    assert str(out) in lines[0], lines[0]
    assert {n: (out / n).read_bytes() for n in INGEST_OUTPUTS} == previous
    assert leftovers(out) == sorted(INGEST_OUTPUTS), leftovers(out)


def test_disk_full_during_a_checkpoint_keeps_the_previous_checkpoint(train_inputs, small_disk, tmp_path):
    d, _ = train_inputs
    first = tmp_path / "first"
    run(train_cmd(d, first, 1))
    out = small_disk / "model"
    shutil.copytree(first, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    # Fill the disk so that the next (same-sized) checkpoint cannot be written beside the old.
    free = shutil.disk_usage(small_disk).free
    (small_disk / "filler").write_bytes(b"\0" * max(free - 1024 * 1024, 0))
    proc = subprocess.run([str(c) for c in train_cmd(d, out, 2)], capture_output=True, text=True, env=quiet_env())
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    RESULTS.append(("train", "disk full during a checkpoint", proc.returncode, lines[-1] if lines else ""))
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert "No space left on device" in lines[0] and ".staged" not in lines[0], lines[0]
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    assert after == before, sorted(set(after) ^ set(before))


def teardown_module(module):
    table = os.environ.get("PGEN_FUZZ_TABLE")
    if table:
        with open(table, "w") as fh:
            fh.write("| stage | case | exit | message |\n|---|---|---:|---|\n")
            for stage, case, rc, msg in RESULTS:
                fh.write(f"| {stage} | {case} | {rc} | {msg.replace('|', '/')} |\n")


# ----------------------------------------------------------------------------- issue 23
def test_a_count_past_int32_is_refused_at_ingest_naming_the_input(sim_dir, tmp_path):
    """A count in [2^31, 2^32) used to wrap to a negative int32 in ingest's cache (and the next
    stage then blamed the cache): now ingest refuses it, naming the input file and row."""
    raw = pq.read_table(sim_dir / "adata_train.parquet").to_pandas()
    raw["count"] = raw["count"].astype("int64")
    raw.loc[raw.index[2], "count"] = 3_000_000_000
    big = tmp_path / "big.parquet"
    raw.to_parquet(big, index=False)
    out = tmp_path / "out"
    out.mkdir()
    cmd = [pgen("pgen-ingest"), "--counts", big, "--obs", sim_dir / "adata_obs_meta.csv", "--genes", sim_dir / "genes.txt",
           "--out-counts", out / "counts.parquet", "--out-obs", out / "obs.parquet"]
    refused(cmd, out, ["big.parquet", "row 3", "below 2^31", "3000000000"], case="a count of 3e9 (int64)", stage="ingest")


def test_limma_leaves_nothing_in_tmpdir_and_removes_a_killed_runs_folder(fx, tmp_path):
    """kill -9 during limma used to leave $TMPDIR/pgen-limma-* and R's Rtmp* behind: R's
    temporary folder is now inside the exchange folder, and the next run removes the folders of
    runs whose process is gone (a live one's are kept)."""
    tmp = tmp_path / "tmp"
    stale = tmp / "pgen-limma-999999999-abc" / "rtmp" / "RtmpXYZ"
    stale.mkdir(parents=True)
    (stale / "big").write_bytes(b"x" * 1000)
    live = tmp / f"pgen-limma-{os.getpid()}-def"
    live.mkdir()
    out = tmp_path / "de.parquet"
    proc = subprocess.run([str(c) for c in [pgen("pgen-limma"), "--pseudobulk", fx["pb"], "--cell-type", NK, "--script", SCRIPT, "--out", out]],
                          capture_output=True, text=True, env=quiet_env(TMPDIR=tmp), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp.iterdir()) == [live.name], leftovers(tmp)
    pd_de = pq.read_table(out).to_pandas()
    assert len(pd_de) > 0


def test_blend_names_the_table_with_the_extra_gene(fx, tmp_path):
    """pgen-blend used to blame the second (good) table when the first had an extra gene."""
    table = pq.read_table(fx["de"]).to_pandas()
    extra = table.copy()
    extra["NOT_A_GENE"] = 0.0
    bad = tmp_path / "extra_gene.parquet"
    extra.to_parquet(bad, index=False)
    out = tmp_path / "out"
    out.mkdir()
    cmd = [pgen("pgen-blend"), "apply", "--prediction", f"a={bad}", "--prediction", f"b={fx['de']}", "--weights", "0.5,0.5",
           "--out", out / "blend.parquet", "--out-weights", out / "w.csv"]
    line = refused(cmd, out, ["extra_gene.parquet", "gene `NOT_A_GENE` is not in it"], case="an extra gene in the first table", stage="blend")
    assert not line.startswith(f"error: {fx['de']}"), line
