"""The generative models end to end with the release executables on the demo simulation:
pgen-train (DGD, NB-VAE) and pgen-loglik.

- Both models must give the held-out (validation) cells a higher NB log-likelihood than the
  per-gene NB with (cell type, compound) group means; that baseline's number is recomputed
  here independently with scipy.stats.nbinom.
- A run killed with SIGKILL mid-training and resumed ends with the same bytes as an
  uninterrupted run; the same seed gives the same bytes, another seed other bytes.
- Bad inputs give one-line errors and exit 1.
"""

import json
import signal
import subprocess
import time

import numpy as np
import pandas as pd
import pytest
from scipy import sparse, stats

from conftest import _binary, run
from test_xgb import fails

def common(**settings):
    """`--set common.KEY=VALUE` for each setting (pgen-train reads the `train` section)."""
    return [a for k, v in settings.items() for a in ("--set", f"common.{k}={v}")]


# The workflow's demo settings (config/config.yaml train.common), for the baseline comparison.
DEMO = common(batch_size=1024, max_epochs=30, min_epochs=10, patience=5, seed=0)
# A small, fast model for the determinism and resume tests (never stops early).
SMALL = common(decoder_hidden="[32, 64]", encoder_hidden="[64, 32]", batch_size=2048, min_epochs=1, patience=1000)


@pytest.fixture(scope="module")
def bins():
    return {n: _binary(f"pgen-{n}") for n in ["filter", "split", "train", "loglik"]}


@pytest.fixture(scope="module")
def split(bins, sim_dir, ingest_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("model_split")
    run([bins["filter"], "--counts", ingest_dir / "counts.parquet", "--obs", ingest_dir / "obs.parquet",
         "--set", "drop_compounds=[Dabrafenib, Belinostat]",
         "--out-counts", d / "f_counts.parquet", "--out-obs", d / "f_obs.parquet", "--removed", d / "removed.csv"])
    run([bins["split"], "--counts", d / "f_counts.parquet", "--obs", d / "f_obs.parquet",
         "--id-map", sim_dir / "id_map.csv", "--set", "keep_target_relevant=true", "--set", "seed=0",
         "--out-train-counts", d / "counts.parquet", "--out-train-obs", d / "obs.parquet",
         "--out-holdout-counts", d / "h_counts.parquet", "--out-holdout-obs", d / "h_obs.parquet",
         "--out-targets", d / "targets.csv", "--out-validation", d / "validation.txt"])
    return d


def train_cmd(bins, split, model, out_dir, *extra):
    return [bins["train"], "--model", model, "--counts", split / "counts.parquet", "--obs", split / "obs.parquet",
            "--validation", split / "validation.txt", "--out-dir", out_dir, "--threads", 2, *extra]


def loglik_cmd(bins, split, model_dir, table, obs=None):
    return [bins["loglik"], "--model", model_dir, "--counts", split / "counts.parquet",
            "--obs", obs or split / "obs.parquet", "--cells", split / "validation.txt",
            "--baseline-counts", split / "counts.parquet", "--baseline-obs", split / "obs.parquet",
            "--threads", 2, "--out-table", table]


def baseline_loglik_scipy(split):
    """Per-gene NB, mean = the (cell type, compound) group's training mean shrunk towards the
    gene's overall mean with the weight of one cell; r by pooled within-group moments
    (the definition in pgen-loglik --help / the README), evaluated with scipy.stats.nbinom."""
    obs = pd.read_parquet(split / "obs.parquet")
    counts = pd.read_parquet(split / "counts.parquet")
    val_ids = set(open(split / "validation.txt").read().split())
    cells = pd.Index(obs["obs_id"])
    genes = pd.Index(sorted(counts["gene"].astype(str).unique()))
    rows = cells.get_indexer(counts["obs_id"].astype(str))
    cols = genes.get_indexer(counts["gene"].astype(str))
    x = sparse.csr_matrix((counts["count"].to_numpy(float), (rows, cols)), shape=(len(cells), len(genes))).toarray()
    is_val = obs["obs_id"].isin(val_ids).to_numpy()
    group = (obs["cell_type"].astype(str) + "|" + obs["sm_name"].astype(str)).to_numpy()
    train_x, train_g = x[~is_val], group[~is_val]
    overall = train_x.mean(axis=0)
    means, excess, msq = {}, np.zeros(x.shape[1]), np.zeros(x.shape[1])
    for g in np.unique(train_g):
        xs = train_x[train_g == g]
        n = len(xs)
        means[g] = np.maximum((xs.sum(axis=0) + overall) / (n + 1), 1e-8)
        if n >= 2:
            mean = xs.mean(axis=0)
            var = xs.var(axis=0, ddof=1)
            excess += n * (var - mean)
            msq += n * mean * mean
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(excess > 0, np.clip(msq / excess, 1e-3, 1e6), 1e6)
    ll = []
    for xi, g in zip(x[is_val], group[is_val]):
        m = means[g]
        ll.append(stats.nbinom.logpmf(xi, r, r / (r + m)).sum())
    return float(np.mean(ll)), int(is_val.sum())


@pytest.mark.parametrize("model", ["dgd", "nbvae"])
def test_models_beat_the_group_mean_baseline(model, bins, split, tmp_path):
    out = tmp_path / model
    run(train_cmd(bins, split, model, out, *DEMO, *(["--set", "nbvae.kl_warmup=10"] if model == "nbvae" else [])))
    for f in ["model.safetensors", "model.json", "last.safetensors", "history.csv", "loss.png", "latent.png"]:
        assert (out / f).is_file(), f
    history = pd.read_csv(out / "history.csv")
    assert history["train_recon"].iloc[-1] < history["train_recon"].iloc[0]
    assert history["best"].sum() == 1
    table = tmp_path / "loglik.csv"
    run(loglik_cmd(bins, split, out, table))
    t = pd.read_csv(table).set_index(["name", "cell_type"])
    ours = t.loc[(model, "all"), "mean_loglik_per_cell"]
    base = t.loc[("baseline_group_mean", "all"), "mean_loglik_per_cell"]
    # The baseline, recomputed with scipy, must be what pgen-loglik reports.
    scipy_base, n_val = baseline_loglik_scipy(split)
    assert t.loc[("baseline_group_mean", "all"), "cells"] == n_val
    assert abs(base - scipy_base) <= 1e-6 * abs(scipy_base), (base, scipy_base)
    print(f"{model}: {ours:.3f} per cell vs baseline {base:.3f}")
    assert ours > base, f"{model} log-likelihood {ours:.3f} does not beat the group-mean baseline {base:.3f}"


def test_resume_after_kill_gives_the_uninterrupted_model(bins, split, tmp_path):
    settings = [*SMALL, *common(max_epochs=14, checkpoint_every=1)]
    full, killed = tmp_path / "full", tmp_path / "killed"
    run(train_cmd(bins, split, "dgd", full, *settings))
    proc = subprocess.Popen([str(c) for c in train_cmd(bins, split, "dgd", killed, *settings)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    epoch = 0
    while time.time() < deadline and proc.poll() is None:
        try:
            epoch = json.loads((killed / "last.json").read_text())["epoch"]
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            epoch = 0
        if epoch >= 3:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run was not killed mid-training (exit {proc.returncode})"
    stopped_at = json.loads((killed / "last.json").read_text())["epoch"]
    assert 3 <= stopped_at < 14, stopped_at
    run(train_cmd(bins, split, "dgd", killed, *settings, "--resume"))
    for f in ["model.safetensors", "last.safetensors"]:
        assert (full / f).read_bytes() == (killed / f).read_bytes(), f"{f} differs after resume"
    a, b = (json.loads((d / "last.json").read_text()) for d in (full, killed))
    strip = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h]
    assert strip(a["history"]) == strip(b["history"])


def drop_tensors(path, prefix):
    """Rewrites a safetensors file without the tensors whose names start with `prefix`
    (format: u64 little-endian header length, JSON header, then the data)."""
    blob = path.read_bytes()
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])
    data = blob[8 + n:]
    out_header, chunks, offset = {}, [], 0
    for name, info in header.items():
        if name == "__metadata__":
            out_header[name] = info
            continue
        if name.startswith(prefix):
            continue
        start, end = info["data_offsets"]
        chunks.append(data[start:end])
        out_header[name] = {**info, "data_offsets": [offset, offset + end - start]}
        offset += end - start
    raw = json.dumps(out_header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + b"".join(chunks))


def test_resume_auto_starts_over_on_a_damaged_or_foreign_checkpoint(bins, split, tmp_path):
    """--resume auto (what the workflow passes) continues only from a checkpoint of the same
    settings; a truncated checkpoint or one of other settings gives a fresh run's bytes."""
    settings = [*SMALL, *common(max_epochs=2)]
    fresh = tmp_path / "fresh"
    run(train_cmd(bins, split, "dgd", fresh, *settings))
    damaged = tmp_path / "damaged"
    run(train_cmd(bins, split, "dgd", damaged, *settings, "--stop-after", 1))
    # Damaged half-way: the parameters load, the mixture optimiser's state is missing.
    drop_tensors(damaged / "last.safetensors", "opt.mix.")
    run(train_cmd(bins, split, "dgd", damaged, *settings, "--resume", "auto"))
    foreign = tmp_path / "foreign"
    run(train_cmd(bins, split, "dgd", foreign, *settings, *common(latent_dim=3)))
    run(train_cmd(bins, split, "dgd", foreign, *settings, "--resume", "auto"))
    for d in (damaged, foreign):
        assert (d / "model.safetensors").read_bytes() == (fresh / "model.safetensors").read_bytes(), d.name


def test_history_and_loss_are_rewritten_after_every_epoch(bins, split, tmp_path):
    """Watchable training: each epoch's log line says `epoch k/max`, the elapsed time and an
    ETA, and history.csv (k rows) and loss.png are there after epoch k — also when the run stops
    there as if killed after the epoch (--stop-after), before the end-of-training report; a
    resumed run goes on writing the same files."""
    out = tmp_path / "dgd"
    settings = [*SMALL, *common(max_epochs=4, checkpoint_every=1)]
    env = {"RUST_LOG": "info", "PATH": "/usr/bin:/bin"}
    epoch_line = lambda log, k: [l for l in log.splitlines() if f"epoch {k}/4:" in l]
    proc = run(train_cmd(bins, split, "dgd", out, *settings, "--stop-after", 1), env=env)
    lines = epoch_line(proc.stderr, 1)
    assert len(lines) == 1 and "elapsed 0:" in lines[0] and "ETA 0:" in lines[0], proc.stderr
    history = pd.read_csv(out / "history.csv")
    assert list(history["epoch"]) == [1], history
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (out / "latent.png").exists()  # the end-of-training report is not written yet
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")], "a temporary was left behind"
    proc = run(train_cmd(bins, split, "dgd", out, *settings, "--resume", "yes", "--stop-after", 3), env=env)
    assert not epoch_line(proc.stderr, 1) and epoch_line(proc.stderr, 2) and epoch_line(proc.stderr, 3), proc.stderr
    resumed = pd.read_csv(out / "history.csv")
    assert list(resumed["epoch"]) == [1, 2, 3], resumed
    # The first epoch's row is the one written before the interruption (its losses restored).
    cols = ["train_recon", "train_prior", "val_recon", "val_prior", "val_loss"]
    assert resumed.loc[0, cols].tolist() == history.loc[0, cols].tolist()
    assert resumed["best"].sum() == 1
    run(train_cmd(bins, split, "dgd", out, *settings, "--resume", "yes"), env=env)
    assert list(pd.read_csv(out / "history.csv")["epoch"]) == [1, 2, 3, 4]
    assert (out / "latent.png").is_file()


@pytest.mark.parametrize("model", ["dgd", "nbvae"])
def test_same_seed_same_bytes(model, bins, split, tmp_path):
    settings = [*SMALL, *common(max_epochs=3)]
    for name, seed in [("a", 0), ("b", 0), ("c", 1)]:
        run(train_cmd(bins, split, model, tmp_path / name, *settings, *common(seed=seed)))
    blob = lambda n: (tmp_path / n / "model.safetensors").read_bytes()
    assert blob("a") == blob("b")
    assert blob("a") != blob("c")


def test_bad_inputs(bins, split, tmp_path):
    # A validation id that is not a training cell: the file and line are named.
    bad_ids = tmp_path / "ids.txt"
    bad_ids.write_text("no-such-cell\n")
    out = tmp_path / "o1" / "model"
    cmd = train_cmd(bins, split, "dgd", out, *SMALL, *common(max_epochs=1))
    cmd[cmd.index("--validation") + 1] = bad_ids
    err = fails(cmd, out / "model.safetensors", "ids.txt", "row 1", "no-such-cell")
    assert not out.exists() or not any(out.iterdir()), err
    # Unknown model, bad settings: one line naming the key.
    fails(train_cmd(bins, split, "gan", tmp_path / "o2", *SMALL), tmp_path / "o2" / "model.safetensors", "invalid value 'gan'", "dgd, nbvae")
    fails(train_cmd(bins, split, "dgd", tmp_path / "o3", *SMALL, *common(decoder_betas="[0.5]")), tmp_path / "o3" / "model.safetensors",
          "train.common.decoder_betas")
    fails(train_cmd(bins, split, "dgd", tmp_path / "o4", *SMALL, *common(min_epochs=5, max_epochs=2)), tmp_path / "o4" / "model.safetensors",
          "train.min_epochs", "more than max_epochs")
    fails(train_cmd(bins, split, "dgd", tmp_path / "o5", *SMALL, "--set", "dgd.dirichlet_alpha=-1"), tmp_path / "o5" / "model.safetensors",
          "train.dirichlet_alpha")
    # Resuming with other settings is refused, naming them.
    model = tmp_path / "m"
    run(train_cmd(bins, split, "dgd", model, *SMALL, *common(max_epochs=1)))
    proc = subprocess.run([str(c) for c in train_cmd(bins, split, "dgd", model, *SMALL, *common(max_epochs=1, latent_dim=3), "--resume")],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "latent_dim" in proc.stderr.strip().splitlines()[-1], proc.stderr
    # Scoring cells with a category the model never saw: the column and the value are named.
    obs = pd.read_parquet(split / "obs.parquet")
    val = set(open(split / "validation.txt").read().split())
    obs["plate_name"] = obs["plate_name"].astype(str)
    obs.loc[obs["obs_id"].isin(val), "plate_name"] = "plate_unseen"
    odd = tmp_path / "odd_obs.parquet"
    obs.to_parquet(odd, index=False)
    table = tmp_path / "scores" / "loglik.csv"
    fails(loglik_cmd(bins, split, model, table, obs=odd), table, "plate_name", "plate_unseen")
