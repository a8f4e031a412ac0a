#!/usr/bin/env python3
"""Where a pgen-train step's time goes, by kind of work, from `perf record` samples of
`pgen-train --bench-steps N` (one or more binaries, side by side):

    perf record -o before.data target/…/pgen-train --model dgd --bench-steps 30 …
    python3 bench/dgd/perf_breakdown.py before.data after.data [--names before after]

Each sample's symbol (and shared object) is put in one of the categories below by name; the
table gives each category's share of all samples (loading the data before the steps is in
"other", so use enough steps that it is small)."""
import argparse
import re
import subprocess

CATEGORIES = [
    ("oneDNN products (AMX JIT kernels, its OpenMP threads)", lambda dso, sym: dso.startswith("[JIT]") or "libdnnl" in dso or "libgomp" in dso),
    ("NB op, dense k = 0 pass", lambda dso, sym: "dense_row" in sym),
    ("NB op, sparse k > 0 part (f64 log/lgamma per non-zero)", lambda dso, sym: "forward_link" in sym or "count_terms" in sym or re.search(r"__(log1p|ieee754_log|ieee754_exp|lgamma|exp)\w*", sym) is not None),
    ("candle elementwise ops and gradient zero-fill (binary_map, memset, memmove)", lambda dso, sym: "binary_map" in sym or "unary_map" in sym or "__memset" in sym or "__memmove" in sym or "BarrierGuard" in sym),
    ("Adam", lambda dso, sym: "adam" in sym),
    ("bf16 rounding (weights, output gradients) and transposes", lambda dso, sym: "bf16::" in sym),
    ("kernel (page faults, TLB shootdowns, scheduling)", lambda dso, sym: dso.startswith("[kernel")),
]


def shares(data):
    out = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "dso,symbol", "--stdio"], capture_output=True, text=True, check=True).stdout
    totals = {name: 0.0 for name, _ in CATEGORIES}
    totals["other (rayon, candle's bookkeeping, loading the data)"] = 0.0
    for line in out.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+(?: tid \d+)?)\s+\[[.k]\]\s+(.*)$", line)
        if not m:
            continue
        pct, dso, sym = float(m.group(1)), m.group(2), m.group(3).strip()
        for name, match in CATEGORIES:
            if match(dso, sym):
                totals[name] += pct
                break
        else:
            totals["other (rayon, candle's bookkeeping, loading the data)"] += pct
    return totals


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("data", nargs="+", help="perf.data files")
    ap.add_argument("--names", nargs="+", help="column names (default: the file names)")
    args = ap.parse_args()
    names = args.names or args.data
    tables = [shares(d) for d in args.data]
    print("| work | " + " | ".join(f"{n} %" for n in names) + " |")
    print("|---|" + "---:|" * len(names))
    for key in tables[0]:
        print(f"| {key} | " + " | ".join(f"{t[key]:.1f}" for t in tables) + " |")


if __name__ == "__main__":
    main()
