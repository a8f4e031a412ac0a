"""docs/configuration.md is generated from the schema (workflow/scripts/config_reference.py):
the committed page is current, it names every key the shipped configs set, and the check
notices a stale page."""

import subprocess
import sys

import yaml

from conftest import REPO

SCRIPT = REPO / "workflow" / "scripts" / "config_reference.py"
PAGE = REPO / "docs" / "configuration.md"


def check(out):
    return subprocess.run([sys.executable, SCRIPT, "--check", "--out", out], capture_output=True, text=True)


def test_committed_page_is_current():
    proc = check(PAGE)
    assert proc.returncode == 0, proc.stderr


def test_a_stale_page_is_noticed(tmp_path):
    stale = tmp_path / "configuration.md"
    stale.write_text(PAGE.read_text().replace("| `xgb.eta` |", "| `xgb.etaa` |"))
    proc = check(stale)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (f"{stale}: out of date with workflow/schemas/: run "
                                   ".venv/bin/python workflow/scripts/config_reference.py")


def dotted_keys(node, prefix=""):
    """The dotted keys a config file sets (maps with names of the user's own — blends, sweeps,
    threads, resources, input.columns, xgb.params, external.obs — count as one key)."""
    free = {"blend.blends", "sweeps", "threads", "resources", "input.columns", "xgb.params", "external.obs"}
    for key, value in node.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and dotted not in free:
            yield from dotted_keys(value, dotted)
        else:
            yield dotted


def test_every_shipped_key_has_a_row():
    rows = {line.split("`")[1] for line in PAGE.read_text().splitlines() if line.startswith("| `")}
    for config in [REPO / "config" / "config.yaml", REPO / "config" / "kaggle-sim.yaml"]:
        for key in dotted_keys(yaml.safe_load(config.read_text())):
            # train.dgd.* and train.nbvae.* are train.common's keys (one row says so).
            shown = key.replace("train.dgd.", "train.common.").replace("train.nbvae.", "train.common.")
            assert shown in rows or f"{shown}.<name>" in rows, (config.name, key)
