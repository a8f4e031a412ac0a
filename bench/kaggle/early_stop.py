#!/usr/bin/env python3
"""The table of bench/kaggle/early_stop.sh: a model's training at full Kaggle-sim scale so far, from
its resume checkpoint's history (`last.json`, which carries over every piece and holds every
epoch; history.csv is a job output that Snakemake removes when a piece is stopped, and the
finished `model.json` is the best epoch's model, its history cut there):
epochs done, seconds in training (the sum of the epochs' own times, so the pieces' start-up and
any idle time between them are left out), the mean epoch, the best epoch and validation loss,
and whether early stopping has ended it."""
import argparse
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(__file__))
from report import cpu  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("work_dir")
    ap.add_argument("model")
    args = ap.parse_args()
    folder = os.path.join(args.work_dir, "results", "models", args.model)
    finished = os.path.exists(os.path.join(folder, "model.json"))
    source = os.path.join(folder, "last.json")
    if not os.path.exists(source) and finished:
        source = os.path.join(folder, "model.json")  # checkpoints off: the final model only
    if not os.path.exists(source):
        sys.exit(f"{source}: no checkpoint yet (has a piece finished an epoch?)")
    meta = json.load(open(source))
    history = meta["history"]
    config = meta["config"]
    seconds = [h["seconds"] for h in history]
    best = min(history, key=lambda h: h["val_loss"])
    print(f"CPU: {cpu()}\n")
    print("| model | epochs done | training s (h) | mean s / epoch | best epoch | best validation loss | state |")
    print("|---|---:|---:|---:|---:|---:|---|")
    state = "stopped early (patience)" if finished and len(history) < config["max_epochs"] else ("finished (max epochs)" if finished else "running: resume to continue")
    print(
        f"| {args.model} | {len(history)} | {sum(seconds):,.0f} ({sum(seconds) / 3600:.2f}) | {statistics.mean(seconds):.1f} | "
        f"{best['epoch']} | {best['val_loss']:.3f} | {state} |"
    )
    print(
        f"\nSettings: min {config['min_epochs']}, max {config['max_epochs']} epochs, patience {config['patience']}, batch {config['batch_size']}, "
        f"precision {history[-1].get('precision', '?')}; {source}"
    )


if __name__ == "__main__":
    main()
