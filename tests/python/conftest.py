"""Shared fixtures: run the release executables once per session into temporary folders."""

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN_DIR = Path(os.environ.get("PGEN_BIN_DIR", REPO / "target" / "release"))
LAYOUT_DIR = REPO.parent / "shared" / "kaggle-layout"


def run(cmd, **kwargs):
    """Run a command; on failure, fail the test with its output."""
    cmd = [str(c) for c in cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        pytest.fail(
            f"command failed with exit code {proc.returncode}: {' '.join(cmd)}\n"
            f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}",
            pytrace=False,
        )
    return proc


def workflow_args(workdir):
    """The snakemake arguments that run (or plan) the workflow in `workdir` with the default
    config and this checkout's binaries, as conftest demo_workflow ran it."""
    return ["--snakefile", REPO / "workflow" / "Snakefile", "-d", workdir,
            "--configfile", REPO / "config" / "config.yaml", "--config", f"bin_dir={BIN_DIR}"]


def _binary(name):
    path = BIN_DIR / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"{path} is missing: run scripts/setup (it builds target/release with "
            f"`cargo build --release --workspace`) before the Python tests",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def simulate_bin():
    return _binary("pgen-simulate")


@pytest.fixture(scope="session")
def ingest_bin():
    return _binary("pgen-ingest")


def simulate(simulate_bin, out, seed=0, threads=2, extra=()):
    run([simulate_bin, "--set", "preset=demo", "--set", f"seed={seed}", "--threads", threads,
         *extra, "--out", out])
    return Path(out)


def ingest(ingest_bin, sim_dir, out, threads=2):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    run([
        ingest_bin,
        "--counts", sim_dir / "adata_train.parquet",
        "--obs", sim_dir / "adata_obs_meta.csv",
        "--excluded", sim_dir / "adata_excluded_ids.csv",
        "--genes", sim_dir / "genes.txt",
        "--threads", threads,
        "--out-counts", out / "counts.parquet",
        "--out-obs", out / "obs.parquet",
        "--summary", out / "summary.json",
        "--qc-plot", out / "qc.png",
    ])
    return out


@pytest.fixture(scope="session")
def sim_dir(simulate_bin, tmp_path_factory):
    """pgen-simulate --preset demo --seed 0 output."""
    return simulate(simulate_bin, tmp_path_factory.mktemp("sim_seed0"))


@pytest.fixture(scope="session")
def ingest_dir(ingest_bin, sim_dir, tmp_path_factory):
    """pgen-ingest output for sim_dir."""
    return ingest(ingest_bin, sim_dir, tmp_path_factory.mktemp("ingest"))


@pytest.fixture(scope="session")
def demo_workflow(simulate_bin, tmp_path_factory):
    """`snakemake -c2` on the default config (every route, models included) in a scratch
    working directory, once per session; the folder it ran in."""
    snakemake = REPO / ".venv" / "bin" / "snakemake"
    if not snakemake.exists():
        pytest.fail(f"{snakemake} is missing: run scripts/setup", pytrace=False)
    if os.environ.get("PGEN_DEMO_WORKFLOW"):
        # While iterating on the tests: a folder where this ran already (brought up to date here).
        d = Path(os.environ["PGEN_DEMO_WORKFLOW"])
    else:
        d = tmp_path_factory.mktemp("demo_workflow")
    # The target first: --quiet takes any number of values (and `--quiet all` hides errors).
    run([snakemake, "all", "-c2", "--quiet", "rules", "progress", *workflow_args(d)])
    return d
