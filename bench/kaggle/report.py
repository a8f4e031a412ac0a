#!/usr/bin/env python3
"""The per-stage table of a workflow run (bench/kaggle/run.sh): every job's wall time and peak
RSS from Snakemake's benchmark files (benchmarks/**/*.tsv; RSS summed over the job's processes),
per rule and in total, the CPU it ran on, and each model's training extrapolated from its measured
epochs to the write-up's early stop (labelled as such)."""
import argparse
import csv
import glob
import json
import os
import re
import subprocess


def jobs(root):
    out = []
    for path in sorted(glob.glob(os.path.join(root, "benchmarks", "**", "*.tsv"), recursive=True)):
        name = os.path.relpath(path, os.path.join(root, "benchmarks"))[:-4]
        if name.startswith("sweeps"):
            continue
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        if rows:
            r = rows[-1]
            out.append((name, float(r["s"]), float(r["max_rss"]) if r["max_rss"] not in ("", "-") else float("nan"),
                        float(r["cpu_time"]) if r.get("cpu_time") not in (None, "", "-") else float("nan")))
    return out


def rule_of(job):
    # benchmarks/generate/dgd/run0 → generate; train/dgd → train; limma_train_B_cells → limma_train.
    return job.split("/")[0]


def cpu():
    text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = re.search(r"Model name:\s*(.+)", text)
    flags = re.search(r"Flags:\s*(.+)", text)
    have = [f for f in ("avx512f", "avx512_bf16", "amx_bf16") if flags and f in flags.group(1).split()]
    return f"{model.group(1).strip() if model else 'unknown CPU'} ({os.cpu_count()} CPUs; {', '.join(have) or 'no AVX-512'})"


def elapsed(root):
    """Wall time of the Snakemake run(s): first to last timestamp of each log, summed."""
    total = 0.0
    for log in glob.glob(os.path.join(root, ".snakemake", "log", "*.snakemake.log")):
        stamps = []
        for line in open(log, errors="replace"):
            m = re.match(r"\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]", line)
            if m:
                stamps.append(m.group(1))
        if len(stamps) >= 2:
            import datetime
            f = "%a %b %d %H:%M:%S %Y"
            t0, t1 = (datetime.datetime.strptime(re.sub(" +", " ", s), f) for s in (stamps[0], stamps[-1]))
            total += (t1 - t0).total_seconds()
    return total


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("root", help="the run's working directory")
    p.add_argument("--extrapolate-epochs", type=int, default=135)
    a = p.parse_args()
    js = jobs(a.root)
    if not js:
        raise SystemExit(f"{a.root}: no benchmark files")
    lines = [f"CPU: {cpu()}.", "", "| job | wall s | peak RSS GB | CPU s |", "|---|---:|---:|---:|"]
    for name, s, rss, cpu_s in js:
        lines.append(f"| {name} | {s:,.1f} | {rss / 1024:.2f} | {cpu_s:,.0f} |")
    per_rule = {}
    for name, s, rss, _ in js:
        n, t, m = per_rule.get(rule_of(name), (0, 0.0, 0.0))
        per_rule[rule_of(name)] = (n + 1, t + s, max(m, rss))
    lines += ["", "| rule | jobs | wall s (sum) | peak RSS GB (max) |", "|---|---:|---:|---:|"]
    for rule, (n, t, m) in sorted(per_rule.items(), key=lambda kv: -kv[1][1]):
        lines.append(f"| {rule} | {n} | {t:,.1f} | {m / 1024:.2f} |")
    total = sum(s for _, s, _, _ in js)
    peak = max(r for _, _, r, _ in js)
    lines += ["", f"Sum of the jobs' wall times: {total:,.0f} s ({total / 3600:.2f} h); the Snakemake run(s) took "
              f"{elapsed(a.root):,.0f} s (jobs overlap where cores allow); the largest job peak RSS {peak / 1024:.2f} GB."]
    # last.json has every epoch's numbers (model.json is the best epoch's checkpoint).
    for hist in sorted(glob.glob(os.path.join(a.root, "results", "models", "*", "last.json"))):
        model = os.path.basename(os.path.dirname(hist))
        meta = json.load(open(hist))
        epochs = [h["seconds"] for h in meta["history"]]
        job = next((s for name, s, _, _ in js if name == f"train/{model}"), None)
        if not epochs or job is None:
            continue
        per_epoch = sum(epochs) / len(epochs)
        overhead = job - sum(epochs)
        precision = sorted({h.get("precision", "?") for h in meta["history"]})
        est = overhead + per_epoch * a.extrapolate_epochs
        lines.append(f"- {model}: {len(epochs)} epochs measured over {len(meta['train_ids']):,} training cells, "
                     f"{per_epoch:,.1f} s per epoch ({'/'.join(precision)}), {overhead:,.0f} s outside the epochs; "
                     f"**extrapolated** to {a.extrapolate_epochs} epochs: {est / 3600:.1f} h.")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
