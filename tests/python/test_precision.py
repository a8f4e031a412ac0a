"""`train.precision` through pgen-train: the choice is logged; `f32` and `auto` give the same
bytes where bf16 is not available, bf16 runs are deterministic where it is; a bad value, or
`bf16` on a machine without the units or oneDNN, is refused in one line naming the key."""

import re
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import _binary, run


def bf16_here():
    """What pgen-train's `auto` should find: AMX-BF16 or AVX512-BF16, and libdnnl.so.2."""
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    units = re.search(r"\b(amx_bf16|avx512_bf16)\b", flags) is not None
    ldconfig = subprocess.run(["sh", "-c", "{ ldconfig -p || /sbin/ldconfig -p; } 2>/dev/null"], capture_output=True, text=True).stdout
    return units and "libdnnl.so.2 " in ldconfig


@pytest.fixture(scope="module")
def train_args(ingest_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("precision")
    ids = pq.read_table(ingest_dir / "obs.parquet", columns=["obs_id"]).column(0).to_pylist()
    (d / "val.txt").write_text("".join(i + "\n" for i in ids[::10]))
    exe = _binary("pgen-train")
    settings = dict(decoder_hidden="[32, 64]", batch_size=2048, max_epochs=2, min_epochs=1)
    return d, [exe, "--model", "dgd", "--counts", ingest_dir / "counts.parquet", "--obs", ingest_dir / "obs.parquet",
               "--validation", d / "val.txt", "--threads", 2,
               *[a for k, v in settings.items() for a in ("--set", f"common.{k}={v}")]]


def train(train_args, name, precision):
    d, args = train_args
    out = d / name
    proc = run([*args, "--out-dir", out, "--set", f"precision={precision}"])
    return (out / "last.safetensors").read_bytes(), proc.stderr


def refused(train_args, name, precision):
    d, args = train_args
    proc = subprocess.run([str(a) for a in [*args, "--out-dir", d / name, "--set", f"precision={precision}"]], capture_output=True, text=True)
    assert proc.returncode != 0, proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "train.precision" in lines[0], proc.stderr
    return lines[0]


def test_choice_is_logged_and_f32_is_deterministic(train_args):
    f32, log = train(train_args, "f32", "f32")
    assert "precision: f32 (as set)" in log, log
    assert train(train_args, "f32b", "f32")[0] == f32
    auto, log = train(train_args, "auto", "auto")
    if bf16_here():
        assert "precision: bf16" in log, log
        assert auto != f32
    else:
        assert "precision: f32 (auto" in log, log
        assert auto == f32, "auto without bf16 must be the f32 run"


def test_bf16_runs_where_it_can_and_is_refused_where_it_cannot(train_args):
    if bf16_here():
        a, log = train(train_args, "bf16a", "bf16")
        assert "precision: bf16 decoder products" in log, log
        assert train(train_args, "bf16b", "bf16")[0] == a, "bf16 training is not deterministic"
    else:
        line = refused(train_args, "bf16", "bf16")
        assert "AMX-BF16" in line or "oneDNN" in line, line


def test_a_bad_value_is_refused_naming_the_key(train_args):
    line = refused(train_args, "bad", "fp16")
    assert "unknown variant `fp16`" in line, line
