"""The HPC surface (issue 12) on the session's demo workflow run (conftest demo_workflow): a
changed parameter reruns only what depends on it (one parameter of every stage family), -R and
per-stage targets, a 3-row sweep that shares every stage its columns leave alone (job counts)
and aggregates, a stage killed mid-write leaves no output Snakemake would trust, and the report
opens in headless Chromium with its plots loaded.

Dry runs (-n) only read the demo folder; the sweep and kill tests write under results/sweeps/
only and check that the main run's outputs are untouched."""
import csv
import json
import os
import re
import signal
import subprocess
import time

import pandas as pd
import pytest

from conftest import BIN_DIR, REPO, _binary, run, workflow_args

SNAKEMAKE = REPO / ".venv" / "bin" / "snakemake"


def snakemake(workdir, *args, config=(), check=True):
    cmd = [SNAKEMAKE, *args, *workflow_args(workdir), *config]
    if check:
        return run(cmd, cwd=workdir)
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, cwd=workdir)
    return proc


def planned_jobs(workdir, *args, config=()):
    """{rule: jobs} of a dry run ({} when there is nothing to do)."""
    # Targets and flags first: --quiet takes any number of values.
    proc = snakemake(workdir, *args, "-n", "--quiet", "rules", config=config)
    out = proc.stdout + proc.stderr
    if "Nothing to be done" in out:
        return {}
    table = out.split("Job stats:", 1)[1]
    jobs = {}
    for line in table.splitlines()[3:]:
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not m:
            break
        if m.group(1) != "total":
            jobs[m.group(1)] = int(m.group(2))
    return jobs


def main_outputs(workdir):
    """Modification times of the main run's outputs (everything but results/sweeps/)."""
    results = workdir / "results"
    return {p: p.stat().st_mtime_ns for p in results.rglob("*") if p.is_file() and "sweeps" not in p.relative_to(results).parts}


UPSTREAM = {"simulate", "ingest", "check_config", "split", "filter", "pseudobulk_train", "pseudobulk_truth", "limma_train",
            "limma_truth", "de_train", "de_truth", "de_train_fit", "inner_split"}
ROUTE_TAIL = {"score", "submission", "leaderboard", "scores_table", "all"}

# family: (--config, rules that must rerun, rules that must not, exact job counts)
RERUN_CASES = {
    "simulate": (["simulate={seed: 1}"], {"simulate"}, set(), {}),
    "split": (["split={seed: 1}"], {"split"}, {"simulate", "ingest"}, {}),
    "filter": (["filter={min_cells: 1}"], {"filter", "train_model", "loglik", "generate"},
               {"simulate", "ingest", "split", "pseudobulk_train", "limma_train", "xgb", "forest", "sizes"}, {"train_model": 2}),
    "de": (['de={design: "~0+Rpert+donor_id+plate_name"}'], {"limma_train", "limma_truth", "de_train", "xgb", "forest", "generate"},
           {"simulate", "ingest", "split", "filter", "pseudobulk_train", "train_model", "sizes"}, {}),
    "xgb": (["xgb={eta: 0.3}"], {"xgb", "xgb_inner", "blend", "clip"} | ROUTE_TAIL,
            UPSTREAM | {"forest", "forest_inner", "train_model", "sizes", "generate", "averaged_route", "blend_without_inner"}, {"blend": 3, "clip": 4}),
    "forest": (["forest={n_trees: 50}"], {"forest", "forest_inner", "blend", "clip"} | ROUTE_TAIL,
               UPSTREAM | {"xgb", "xgb_inner", "train_model", "sizes", "generate"}, {"blend": 1}),
    # One model's setting retrains that model only (and regenerates its runs).
    "train": (["train={dgd: {latent_lr: 0.02}}"], {"train_model", "loglik", "generate", "generated_route", "averaged_route"} | ROUTE_TAIL,
              UPSTREAM | {"xgb", "forest", "sizes"}, {"train_model": 1, "loglik": 1, "generate": 5, "averaged_route": 1}),
    "sizes": (["sizes={n_trees: 100}"], {"sizes", "generate"} | ROUTE_TAIL, UPSTREAM | {"train_model", "xgb", "forest"}, {"generate": 10}),
    "generate": (["generate={combine: median}"], {"generated_route", "averaged_route"} | ROUTE_TAIL,
                 UPSTREAM | {"train_model", "sizes", "generate", "xgb", "forest"}, {}),
    # xgb_dgd has an inner-hold-out run (dgd_avg has one: generate.inner_holdout): its clip is
    # chosen again.
    "blend": (["blend={blends: {xgb_dgd: {routes: [xgb, dgd_avg], weights: [0.5, 0.5]}}}"], {"blend", "clip"} | ROUTE_TAIL,
              UPSTREAM | {"xgb", "forest", "train_model", "generate", "averaged_route", "blend_without_inner"}, {"blend": 1, "clip": 1, "score": 1}),
    # Shared inner models: the models train once, on the inner hold-out's cells (no second
    # training, no main filter), and the targets and inner pairs are generated with them.
    "inner-models": (["generate={inner_models: shared}"], {"train_model", "loglik", "generate", "generate_inner", "generate_candidate_inner", "calibration"},
                     UPSTREAM | {"train_model_inner", "filter_inner", "xgb", "forest", "sizes", "sizes_inner"}, {"train_model": 2, "generate": 10, "generate_inner": 10}),
    "leaderboard": (["leaderboard={submit: xgb}"], {"leaderboard"}, UPSTREAM | {"xgb", "score", "scores_table"}, {}),
    # The ranking metric rechooses the clips of the 13 routes with an inner run, and the generation
    # settings set to auto (each model's calibration, so its runs are generated again), rescores
    # and resubmits and ranks again; no regression route or baseline is remade.
    "leaderboard-metric": (["leaderboard={metric: mrrmse_clip4}"], {"calibration", "generate", "clip", "score", "submission", "scores_table", "leaderboard"},
                           UPSTREAM | {"xgb", "forest", "baseline", "train_model", "sizes"},
                           {"calibration": 2, "generate": 10, "clip": 13, "score": 13, "submission": 13}),
    # The ceiling's seed splits the cells anew: its pseudo-bulks, limma and score, and the board
    # that shows it.
    "ceiling": (["ceiling={seed: 1}"], {"pseudobulk_half", "limma_half", "de_half", "ceiling_score", "scores_table", "leaderboard"},
                UPSTREAM | {"xgb", "forest", "train_model", "generate", "baseline", "score", "submission", "clip"},
                {"pseudobulk_half": 2, "limma_half": 4, "de_half": 2}),
}


@pytest.mark.parametrize("config, must, must_not, counts", RERUN_CASES.values(), ids=RERUN_CASES.keys())
def test_changed_parameter_reruns_only_what_depends_on_it(demo_workflow, config, must, must_not, counts):
    jobs = planned_jobs(demo_workflow, config=config)
    assert must <= jobs.keys(), (must - jobs.keys(), jobs)
    assert not (must_not & jobs.keys()), (must_not & jobs.keys(), jobs)
    for rule, n in counts.items():
        assert jobs.get(rule) == n, (rule, jobs)


def test_log_level_and_unchanged_config_rerun_nothing(demo_workflow):
    assert planned_jobs(demo_workflow) == {}
    # The log level is exported by the shell prefix, not a rule param.
    assert planned_jobs(demo_workflow, config=["log_level=debug"]) == {}


def test_per_stage_targets_and_forced_reruns(demo_workflow):
    assert planned_jobs(demo_workflow, "results/predictions/xgb.parquet") == {}
    jobs = planned_jobs(demo_workflow, "-R", "xgb")
    assert jobs.get("xgb") == 1 and "blend" in jobs and "leaderboard" in jobs, jobs
    assert not ({"xgb_inner", "forest", "train_model", "limma_train"} & jobs.keys()), jobs
    # -R of a stage for one target only: the stage and what the target needs of it.
    jobs = planned_jobs(demo_workflow, "results/generate/sizes.csv", "-R", "sizes")
    assert jobs == {"sizes": 1}, jobs


SWEEP = "name\txgb.eta\tforest.n_trees\tgenerate.n_runs\neta03\t0.3\t100\t5\ntrees50\t0.1\t50\t5\nruns3\t0.1\t100\t3\n"
# What each row owns: eta03 → xgb (+inner), 3 blends, 4 clips, 4 scores; trees50 → forest (+inner), xgb_forest, 2 clips,
# 2 scores; runs3 → the two averaged routes (+inner: generate.inner_holdout), xgb_dgd, 3 clips, 3 scores; a scores
# table each, one sweep table.
SWEEP_JOBS = {"xgb": 1, "xgb_inner": 1, "forest": 1, "forest_inner": 1, "averaged_route": 2, "averaged_route_inner": 2, "blend": 5, "clip": 9,
              "score": 9, "scores_table": 3, "sweep_table": 1, "all": 1}


@pytest.fixture(scope="module")
def sweep_run(demo_workflow):
    """The 3-row sweep, planned (job counts) and then run; (config, planned jobs, main outputs
    before, after)."""
    path = demo_workflow / "grid.tsv"
    path.write_text(SWEEP)
    config = [f"sweeps={{grid: {path}}}"]
    before = main_outputs(demo_workflow)
    jobs = planned_jobs(demo_workflow, config=config)
    snakemake(demo_workflow, "-c2", "--quiet", "rules", config=config)
    return config, jobs, before, main_outputs(demo_workflow)


def test_sweep_shares_every_stage_its_columns_leave_alone(sweep_run):
    _, jobs, before, after = sweep_run
    assert jobs == SWEEP_JOBS
    assert before == after  # no main-run output was rewritten


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_sweep_table_aggregates_the_rows(demo_workflow, sweep_run):
    rows = {r["row"]: r for r in read_csv(demo_workflow / "results/sweeps/grid/sweep.csv")}
    assert list(rows) == ["eta03", "trees50", "runs3"]
    main = {r["route"]: float(r["mrrmse"]) for r in read_csv(demo_workflow / "results/scores/scores.csv")}
    assert rows["eta03"]["xgb.eta"] == "0.3" and rows["trees50"]["forest.n_trees"] == "50"
    # A route the row leaves alone is the main run's; a changed one is not.
    assert float(rows["trees50"]["mrrmse_xgb"]) == main["xgb"]
    assert float(rows["eta03"]["mrrmse_forest"]) == main["forest"]
    assert float(rows["eta03"]["mrrmse_xgb"]) != main["xgb"]
    assert float(rows["trees50"]["mrrmse_forest"]) != main["forest"]
    # runs3 combines the main run's first 3 generation runs: its dgd_avg is the replicate report's
    # MRRMSE at n_runs = 3 (written with 6 decimals).
    curve = {int(r["n_runs"]): float(r["mrrmse"]) for r in read_csv(demo_workflow / "results/scores/replicates/dgd.csv")}
    assert float(rows["runs3"]["mrrmse_dgd_avg"]) == pytest.approx(curve[3], abs=5e-7)
    assert float(rows["runs3"]["mrrmse_xgb"]) == main["xgb"]
    for r in rows.values():
        best = min((float(v), k.removeprefix("mrrmse_")) for k, v in r.items() if k.startswith("mrrmse_"))
        assert (r["best_route"], float(r["best_mrrmse"])) == (best[1], best[0])
        assert float(r["loglik_dgd"]) < 0 and float(r["own_seconds"]) > 0
    # The inner-hold-out columns are pgen-score's MRRMSE of the owning run's inner predictions
    # (pgen-score prints 6 decimals).
    for row, route, folder in (("trees50", "forest", "results/sweeps/grid/trees50"), ("eta03", "forest", "results"),
                               ("eta03", "xgb", "results/sweeps/grid/eta03"), ("runs3", "zero", "results")):
        out = run([_binary("pgen-score"), "--prediction", demo_workflow / folder / "inner/predictions" / f"{route}.parquet",
                   "--truth", demo_workflow / "results/inner/truth.parquet"]).stdout
        assert float(rows[row][f"inner_mrrmse_{route}"]) == pytest.approx(float(out.split()[1]), abs=5e-7), (row, route, out)
    assert (demo_workflow / "results/sweeps/grid/sweep.png").stat().st_size > 10_000


def test_example_sweep_shares_upstream_stages_once(tmp_path):
    """config/sweeps/demo.tsv on a fresh folder: ingest, split, limma once; dgd trained for the
    main run and once more for the row with another latent_dim; xgb once more for eta03."""
    jobs = planned_jobs(tmp_path, config=[f"sweeps={{demo: {REPO / 'config/sweeps/demo.tsv'}}}"])
    for rule in ("simulate", "ingest", "split", "filter", "pseudobulk_train", "de_train", "sizes"):
        assert jobs[rule] == 1, (rule, jobs)
    assert jobs["limma_train"] == 6 and jobs["train_model"] == 3 and jobs["xgb"] == 2 and jobs["sweep_table"] == 1, jobs


def test_killed_stage_leaves_no_trusted_output(demo_workflow):
    """kill -9 of Snakemake and its job mid-training: the model files do not exist; the training
    progress (history.csv, loss.png: rewritten whole after every epoch, so that an hours-long run
    can be watched) may, whole, and Snakemake marks them incomplete: a plain rerun refuses them,
    after --unlock `--rerun-incomplete` (README: kill -9 of Snakemake) plans the job again and
    completes it."""
    sweep = demo_workflow / "kill.tsv"
    sweep.write_text("name\ttrain.dgd.latent_lr\nlr02\t0.02\n")
    config = [f"sweeps={{kill: {sweep}}}"]
    target = "results/sweeps/kill/lr02/models/dgd/model.safetensors"
    folder = demo_workflow / "results/sweeps/kill/lr02/models/dgd"
    model_files = [folder / n for n in ("model.safetensors", "model.json", "latent.png")]
    progress = [folder / n for n in ("history.csv", "loss.png")]
    cmd = [str(c) for c in (SNAKEMAKE, target, "-c2", "--snakefile", REPO / "workflow" / "Snakefile", "-d", demo_workflow,
                            "--configfile", REPO / "config" / "config.yaml", "--config", f"bin_dir={BIN_DIR}", *config)]
    proc = subprocess.Popen(cmd, cwd=demo_workflow, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    log = demo_workflow / "logs/sweeps/kill/lr02/train/dgd.log"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and "epoch" in log.read_text()):
        time.sleep(0.2)
    assert log.exists(), "training did not start"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not any(p.exists() for p in model_files), [p for p in model_files if p.exists()]
    if progress[0].exists():
        epochs = list(pd.read_csv(progress[0])["epoch"])
        assert epochs == list(range(1, len(epochs) + 1)), epochs
    snakemake(demo_workflow, "--unlock", config=config)
    if any(p.exists() for p in progress):
        refused = subprocess.run(cmd + ["-n"], cwd=demo_workflow, capture_output=True, text=True)
        assert refused.returncode != 0 and "incomplete" in (refused.stdout + refused.stderr).lower(), refused.stdout + refused.stderr
    assert planned_jobs(demo_workflow, target, "--rerun-incomplete", config=config) == {"train_model": 1}
    snakemake(demo_workflow, target, "-c2", "--rerun-incomplete", "--quiet", "rules", config=config)
    assert all(p.exists() for p in model_files + progress)
    epochs = list(pd.read_csv(progress[0])["epoch"])
    assert epochs == list(range(1, len(epochs) + 1)) and len(epochs) > 1, epochs


EXPECTED_REPORT = {
    "QC": ["results/ingest/qc.png"],
    "scores": ["results/scores/leaderboard.png", "results/scores/pvalues.png", "results/scores/xgb.png"],
    "models": ["results/models/dgd/loss.png", "results/models/dgd/latent.png", "results/scores/loglik/dgd.png"],
    "generation": ["results/generate/sizes.png", "results/scores/replicates/dgd.png"],
    "sweeps": ["results/sweeps/grid/sweep.png"],
}

CLICK = """(text => { const a = Array.from(document.querySelectorAll("a")).find(a => a.textContent.trim() === text);
                      if (!a) return false; a.click(); return true; })"""
# The report lists a category's files in a table; the first link of a file's row shows it.
SHOW = """(path => { const cell = Array.from(document.querySelectorAll("td")).find(e => e.textContent.trim() === path);
                     if (!cell) return false; let row = cell;
                     while (row && !row.querySelector("a")) row = row.parentElement;
                     row.querySelector("a").click(); return true; })"""
SHOWN = """(name => Array.from(document.querySelectorAll("img")).some(i =>
               i.src.startsWith("data:image/png") && i.src.includes("filename=" + name) && i.complete && i.naturalWidth > 100))"""
ALL_IMAGES_DECODE = """Promise.all(Object.entries(results).filter(([p, r]) => r.mime_type === "image/png").map(([p, r]) =>
    new Promise(done => { const img = new Image(); img.onload = () => done([p, img.naturalWidth]);
                          img.onerror = () => done([p, 0]); img.src = r.data_uri; })))"""


def test_report_opens_in_chromium_with_every_plot(demo_workflow, sweep_run, tmp_path):
    chromium = pytest.importorskip("chromium")
    executable = chromium.find_chromium()
    if executable is None:
        pytest.fail("chromium is missing: scripts/setup installs it (Debian package chromium)", pytrace=False)
    config, *_ = sweep_run
    report = demo_workflow / "report.html"
    snakemake(demo_workflow, "--report", report, config=config)
    browser = chromium.Browser(executable)
    try:
        browser.open(report.as_uri())
        categories = browser.evaluate("categories")
        results = browser.evaluate("Object.fromEntries(Object.entries(results).map(([p, r]) => [p, r.caption || '']))")
        for category, paths in EXPECTED_REPORT.items():
            listed = [p for sub in categories[category].values() for p in sub]
            assert set(paths) <= set(listed), (category, listed)
        assert all(len(caption) > 40 for caption in results.values()), results
        decoded = browser.evaluate(ALL_IMAGES_DECODE)
        assert decoded and all(width > 100 for _, width in decoded), decoded
        # Through the report's own navigation: the leaderboard, as a user would open it.
        assert browser.evaluate(f"{CLICK}('scores')")
        time.sleep(0.5)
        assert browser.evaluate(f"{CLICK}('Other')")
        time.sleep(0.5)
        assert browser.evaluate(f"{SHOW}('results/scores/leaderboard.png')")
        browser.wait_for(f"{SHOWN}('leaderboard.png')")
        shot = tmp_path / "report.png"
        browser.screenshot(shot)
    finally:
        browser.close()
    from PIL import Image

    with Image.open(shot) as img:
        colours = img.convert("RGB").getcolors(maxcolors=1 << 20)
        assert img.size == (1400, 1000) and len(colours) > 50, len(colours)
    json.dumps(results)  # the captions are plain text


def test_training_asks_a_gpu_when_the_device_is_cuda(demo_workflow, tmp_path):
    """Cluster resources per rule: train_model gets gpu=1 with train.device cuda (the SLURM
    executor's --gpus), or the gres the config gives; every job its mem_mb and runtime. (This
    build has no CUDA, so pgen-config would refuse `cuda` when the workflow loads: the dry runs
    use the real executables but a fake pgen-config that accepts every config.)"""
    bins = tmp_path / "bin"
    bins.mkdir()
    for exe in BIN_DIR.glob("pgen-*"):
        if exe.is_file() and os.access(exe, os.X_OK) and exe.name != "pgen-config":
            (bins / exe.name).symlink_to(exe)
    fake = bins / "pgen-config"  # a fake, for this test only: passes every check, no cells read
    fake.write_text('#!/bin/sh\n[ "$1" = cells ] && echo \'{"cell_types": null, "compounds": null}\'\nexit 0\n')
    fake.chmod(0o755)

    def resources(*config):
        out = snakemake(demo_workflow, "results/models/dgd/model.safetensors", "-n", "-f",
                        config=[f"bin_dir={bins}", *config]).stdout
        # {rule: its resources line} of the planned jobs (a changed bin_dir replans them all)
        planned, rule = {}, None
        for line in out.splitlines():
            m = re.match(r"^(?:local)?rule (\w+):", line)
            rule = m.group(1) if m else rule
            if line.strip().startswith("resources:"):
                planned[rule] = line.split(":", 1)[1]
        return planned

    cpu = resources()
    assert "mem_mb=8000" in cpu["train_model"] and "runtime=240" in cpu["train_model"] and "gpu" not in cpu["train_model"], cpu
    assert "mem_mb=16000" in cpu["ingest"] and "mem_mb=4000" in cpu["simulate"], cpu
    cuda = resources("train={device: cuda}")
    assert "gpu=1" in cuda["train_model"] and "gpu" not in cuda["ingest"], cuda
    gres = resources("train={device: cuda}", "resources={train: {gres: 'gpu:a100:1'}}")
    assert "gres=gpu:a100:1" in gres["train_model"] and "gpu=1" not in gres["train_model"], gres
