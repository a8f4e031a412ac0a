"""The demo DAG through the SLURM profile (profiles/slurm, snakemake-executor-plugin-slurm) on a
one-node SLURM that the test installs and starts itself (tests/slurm/cluster.sh: Debian
slurm-wlm + munge on localhost) and stops afterwards: every compute job is an sbatch job (the
rules marked `localrule: True` run in Snakemake's process), and the scores and submission are
the same bytes as the local run's (conftest demo_workflow).

Needs root (the daemons); where it is not root and not in CI it is skipped with the reason."""
import os
import subprocess

import pytest

from conftest import BIN_DIR, REPO, run

CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
SNAKEMAKE = REPO / ".venv" / "bin" / "snakemake"


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("the SLURM test needs root in CI (it starts munged, slurmctld and slurmd)", pytrace=False)
        pytest.skip("needs root to start a one-node SLURM (run as root, or see tests/slurm/cluster.sh)")
    state = tmp_path_factory.mktemp("slurm")
    run(["bash", CLUSTER, "install"])
    run(["bash", CLUSTER, "start", state])
    try:
        yield state
    finally:
        subprocess.run(["bash", str(CLUSTER), "stop", str(state)], check=False)


def test_demo_through_slurm_matches_the_local_run(demo_workflow, slurm_cluster, tmp_path):
    d = tmp_path / "slurm_run"
    d.mkdir()
    run([SNAKEMAKE, "all", "--profile", REPO / "profiles" / "slurm", "--snakefile", REPO / "workflow" / "Snakefile", "-d", d,
         "--configfile", REPO / "config" / "config.yaml",
         # A test cluster: no accounting database (job states from squeue), no accounts, quick
         # first status checks, and the rules' own mem_mb as asked (the node has ~90 % of the RAM).
         "--slurm-status-command", "squeue", "--slurm-no-account", "--slurm-init-seconds-before-status-checks", "2",
         "--slurm-disable-memory-fudge", "--slurm-keep-successful-logs", "--config", f"bin_dir={BIN_DIR}"], cwd=d)
    for path in ("results/scores/scores.csv", "results/submission/submission.csv", "results/scores/loglik/dgd.csv"):
        assert (d / path).read_bytes() == (demo_workflow / path).read_bytes(), path
    # The compute went through sbatch (one SLURM log folder per rule); the rules marked
    # `localrule: True` ran in Snakemake's own process.
    slurm_rules = {p.name.removeprefix("rule_") for p in (d / "logs" / "slurm").iterdir()}
    assert {"simulate", "ingest", "limma_train", "train_model", "generate", "generate_candidate_inner", "xgb", "forest"} <= slurm_rules, slurm_rules
    local_rules = {"clip", "score", "submission", "prediction_h5ad", "baseline", "blend", "averaged_route", "scores_table", "leaderboard"}
    assert not local_rules & slurm_rules, sorted(local_rules & slurm_rules)
    jobs = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%T"], capture_output=True, text=True, check=True).stdout.split()
    assert len(jobs) >= 60 and set(jobs) == {"COMPLETED"}, sorted(set(jobs))
