"""The workflow used as a Snakemake module by another project (issue 22): a Snakefile in a
folder outside the repository that says `module perturbgen: snakefile: <repo>/workflow/Snakefile`
and `use rule * from perturbgen`, with its own copy of the config (bin_dir null). The module
finds its schemas, scripts, limma recipe and executables from its own location, and its
results equal, byte for byte, those of the repository's workflow run directly."""

import os
import shutil
import subprocess

import pandas as pd
import pytest

from conftest import REPO, run

SNAKEMAKE = REPO / ".venv" / "bin" / "snakemake"
BUILT = REPO / "target" / "release"

USER_SNAKEFILE = """\
configfile: "config.yaml"


module perturbgen:
    snakefile:
        "{snakefile}"
    config:
        config


use rule * from perturbgen
"""

# Simulate, ingest, check the config, split, pseudo-bulk and limma: the stages every route
# starts from, a few seconds on the demo simulation.
TARGET = "results/de/de_train.parquet"


def require_tools():
    if not SNAKEMAKE.exists():
        pytest.fail(f"{SNAKEMAKE} is missing: run scripts/setup", pytrace=False)
    if not (BUILT / "pgen-config").exists():
        pytest.fail(f"{BUILT / 'pgen-config'} is missing: run scripts/setup (cargo build --release --workspace)", pytrace=False)


def user_project(tmp_path):
    """A project of its own, outside the repository, using the workflow as a module."""
    d = tmp_path / "project"
    d.mkdir()
    assert REPO not in d.resolve().parents
    (d / "Snakefile").write_text(USER_SNAKEFILE.format(snakefile=REPO / "workflow" / "Snakefile"))
    shutil.copy2(REPO / "config" / "config.yaml", d / "config.yaml")
    return d


def path_without_pgen():
    """PATH without any folder that holds a pgen-config."""
    return os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p and not os.path.exists(os.path.join(p, "pgen-config")))


def test_module_runs_the_first_stages_in_another_project(tmp_path):
    require_tools()
    project = user_project(tmp_path)
    # bin_dir null: the executables are those built next to the workflow, not ./target/release
    # of the project (there is none) and not PATH (cleared of them).
    env = {**os.environ, "PATH": path_without_pgen()}
    run([SNAKEMAKE, TARGET, "-c2", "--quiet", "rules"], cwd=project, env=env)
    # The same stages by the repository's own Snakefile and config in a folder of their own.
    direct = tmp_path / "direct"
    direct.mkdir()
    run([SNAKEMAKE, TARGET, "-c2", "--quiet", "rules", "--snakefile", REPO / "workflow" / "Snakefile",
         "--configfile", REPO / "config" / "config.yaml", "--directory", direct], cwd=direct, env=env)
    for name in ["results/simulated/genes.txt", "results/ingest/obs.parquet", "results/split/targets.csv", TARGET]:
        assert (project / name).read_bytes() == (direct / name).read_bytes(), name
    # de_train: one row per measured (cell type, compound) pair, a column per simulated gene.
    de = pd.read_parquet(project / TARGET)
    genes = (project / "results/simulated/genes.txt").read_text().split()
    assert [c for c in de.columns if c in set(genes)] == genes
    obs = pd.read_parquet(project / "results/ingest/obs.parquet")
    measured = set(zip(obs["cell_type"].astype(str), obs["sm_name"].astype(str)))
    assert set(zip(de["cell_type"].astype(str), de["sm_name"].astype(str))) <= measured
    assert len(de) > 0 and de[genes].notna().all().all()
    # The jobs' logs and benchmarks are the project's.
    assert (project / "logs" / "de_train.log").exists() and (project / "benchmarks").is_dir()
    assert not (project / "target").exists()


def test_module_plans_the_whole_workflow(tmp_path):
    require_tools()
    project = user_project(tmp_path)
    plan = subprocess.run([str(c) for c in [SNAKEMAKE, "-n", "--quiet", "rules"]], cwd=project, capture_output=True, text=True)
    out = plan.stdout + plan.stderr
    assert plan.returncode == 0, out
    for rule in ["simulate", "ingest", "limma_train", "train_model", "generate", "leaderboard", "all"]:
        assert f"\n{rule} " in out, (rule, out)


def test_bin_dir_null_takes_the_executables_on_path(tmp_path):
    """A workflow copy without a build of its own: bin_dir null falls back to PATH, and with
    no pgen-config there either, the plan stops on one line naming bin_dir."""
    require_tools()
    copy = tmp_path / "copy"
    for sub in ["workflow", "config", "scripts", "envs"]:
        shutil.copytree(REPO / sub, copy / sub, ignore=shutil.ignore_patterns("__pycache__"))
    bare = path_without_pgen()
    plan = subprocess.run([str(SNAKEMAKE), "-n"], cwd=copy, capture_output=True, text=True, env={**os.environ, "PATH": bare})
    assert plan.returncode != 0
    out = plan.stdout + plan.stderr
    errors = [line for line in out.splitlines() if line.startswith("config: bin_dir")]
    assert errors == [f"config: bin_dir: null, and no pgen-config in {copy / 'target' / 'release'} nor on PATH: "
                      "build the executables (scripts/setup), put them on PATH, or set bin_dir"], out
    with_build = f"{BUILT}{os.pathsep}{bare}"
    plan = subprocess.run([str(SNAKEMAKE), "-n", "--quiet", "rules"], cwd=copy, capture_output=True, text=True, env={**os.environ, "PATH": with_build})
    assert plan.returncode == 0, plan.stderr
    # The jobs run the executables found on PATH (absolute paths).
    shown = subprocess.run([str(SNAKEMAKE), "-n", "-p", "results/ingest/summary.json"], cwd=copy, capture_output=True, text=True,
                           env={**os.environ, "PATH": with_build})
    assert shown.returncode == 0, shown.stderr
    assert f"{BUILT / 'pgen-ingest'} " in shown.stdout, shown.stdout
