#!/usr/bin/env python3
"""The per-epoch table of bench/kaggle/epochs.sh: each model's epoch times (from pgen-train's log:
`epoch k/N: … | S s, elapsed …`), the mean over the epochs after the first, the job's peak RSS
and CPU seconds (Snakemake's benchmark file), and the NB-VAE's epoch against the DGD's."""
import argparse
import csv
import os
import re
import statistics
import sys

sys.path.insert(0, os.path.dirname(__file__))
from report import cpu  # noqa: E402

EPOCH = re.compile(r"epoch (\d+)/(\d+): .*\| ([\d.]+) s, elapsed")
CELLS = re.compile(r"(\d+) training and (\d+) validation cells × (\d+) genes")


def model_row(root, model):
    log = os.path.join(root, "logs", "train", f"{model}.log")
    if not os.path.exists(log):
        return None
    text = open(log).read()
    epochs = [float(m.group(3)) for m in EPOCH.finditer(text)]
    cells = CELLS.search(text)
    with open(os.path.join(root, "benchmarks", "train", f"{model}.tsv"), newline="") as fh:
        bench = list(csv.DictReader(fh, delimiter="\t"))[-1]
    steady = epochs[1:] or epochs
    return {
        "model": model,
        "cells": f"{int(cells.group(1)):,} × {int(cells.group(3)):,}" if cells else "?",
        "epochs": epochs,
        "mean": statistics.mean(steady) if steady else float("nan"),
        "rss": float(bench["max_rss"]) / 1024,
        "cpu": float(bench["cpu_time"]),
        "wall": float(bench["s"]),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("root")
    a = ap.parse_args()
    rows = [r for r in (model_row(a.root, m) for m in ("dgd", "nbvae")) if r]
    print(f"CPU: {cpu()}\n")
    print("| model | training cells × genes | epochs (s each) | s / epoch (after the first) | job wall s | job CPU s | peak RSS GiB |")
    print("|---|---|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {r['cells']} | {', '.join(f'{e:.1f}' for e in r['epochs'])} | {r['mean']:.1f} | {r['wall']:.0f} | {r['cpu']:.0f} | {r['rss']:.2f} |")
    by = {r["model"]: r for r in rows}
    if {"dgd", "nbvae"} <= by.keys():
        print(f"\nNB-VAE epoch / DGD epoch: {by['nbvae']['mean'] / by['dgd']['mean']:.2f}× (issue 26's goal: ≤ 1.3×)")


if __name__ == "__main__":
    main()
