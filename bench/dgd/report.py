#!/usr/bin/env python3
"""Summarises the DGD step benchmark written by run.sh into a markdown table.

Reads <runs>/<tool>/run*/ for the tools of TOOLS (result.json: the JSON line of
pgen-train --bench-steps / torch_dgd.py; time.txt: GNU `/usr/bin/time -v`; stat_before/after
and load_before/after), takes the median seconds per step of each tool over the repetitions and
writes the table (median cells/s, ratio candle / PyTorch, load averages, the CPU other processes
used during each run) to --out. Each precision is set against its fastest PyTorch twin in the
run (torch.compile included) with its goal (GOALS), and, given --gemm-bench (the output of
examples/matmul_bench in the same run), the step's matrix products against the fastest rate
that product reaches alone on this CPU (the roofline the step's GEMMs could reach).
"""
import argparse
import datetime
import glob
import json
import os
import re
import statistics

# pgen-train against the best PyTorch configuration of the same precision (issue 26).
GOALS = {"rust": 2.0, "rust-bf16": 3.0}
ROOFLINE_GOAL = 0.5  # the bf16 step at ≥ 50 % of its GEMMs' roofline
BUSY = 0.1  # CPUs used by other processes during a run above which it is flagged

TOOLS = [
    ("rust", "pgen-train (candle)"),
    ("rust-bf16", "pgen-train (candle), precision: bf16"),
    ("rust-bf16-effects", "pgen-train (candle), bf16, shipped decoder (+ additive compound effects; not PyTorch's model)"),
    ("torch", "PyTorch"),
    ("torch-malloc", "PyTorch, pgen-train's malloc settings"),
    ("torch-autocast", "PyTorch, decoder under bf16 autocast"),
    ("torch-autocast-malloc", "PyTorch, bf16 autocast, pgen-train's malloc settings"),
    ("torch-compile-malloc", "PyTorch, torch.compile (loss, mixture), malloc settings"),
    ("torch-compile-forward-malloc", "PyTorch, torch.compile (whole forward), malloc settings"),
    ("torch-compile-autocast-malloc", "PyTorch, torch.compile (loss, mixture) + bf16 autocast, malloc settings"),
    ("torch-compile-forward-autocast-malloc", "PyTorch, torch.compile (whole forward) + bf16 autocast, malloc settings"),
    ("torch-trivial", "PyTorch, trivial loss (mean logit²)"),
    ("torch-fused", "PyTorch, Adam(fused=True)"),
]


def cpu_seconds(path):
    text = open(path).read()
    return sum(float(re.search(rf"{k} time \(seconds\): (\S+)", text).group(1)) for k in ("User", "System"))


def wall_seconds(path):
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", open(path).read()).group(1)
    secs = 0.0
    for part in wall.split(":"):
        secs = secs * 60 + float(part)
    return secs


def other_cpu(d):
    """CPUs (on average) that other processes kept busy during the run, from /proc/stat."""
    try:
        def busy(name):
            f = [int(x) for x in open(os.path.join(d, name)).read().split()[1:]]
            return f[0] + f[1] + f[2] + f[5] + f[6] + f[7]
        total = (busy("stat_after") - busy("stat_before")) / os.sysconf("SC_CLK_TCK")
        t = os.path.join(d, "time.txt")
        return max(0.0, (total - cpu_seconds(t)) / wall_seconds(t))
    except (OSError, AttributeError, ValueError, IndexError, ZeroDivisionError):
        return None


def runs(root, key):
    out = []
    for d in sorted(glob.glob(os.path.join(root, key, "run*"))):
        r = json.load(open(os.path.join(d, "result.json")))
        load = [open(os.path.join(d, f)).read().split()[0] for f in ("load_before", "load_after")]
        out.append({"dir": d, "run": os.path.basename(d), "r": r, "load": load, "other": other_cpu(d),
                    "cpu_per_wall": cpu_seconds(os.path.join(d, "time.txt")) / wall_seconds(os.path.join(d, "time.txt"))})
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", help="bench/out/dgd/runs")
    p.add_argument("--out", required=True)
    p.add_argument("--machine", default="")
    p.add_argument("--rust-version", default="")
    p.add_argument("--gemm-bench", help="output of examples/matmul_bench (GFLOP/s of the big layer's products)")
    args = p.parse_args()

    res = {key: runs(args.runs, key) for key, _ in TOOLS}
    if not res["rust"] or not res["torch"]:
        raise SystemExit("error: no rust or torch runs")
    med = {k: statistics.median(x["r"]["seconds_per_step"] for x in v) for k, v in res.items() if v}
    batch = res["rust"][0]["r"]["batch"]
    threads = res["rust"][0]["r"]["threads"]
    t0 = res["torch"][0]["r"]
    ratio = med["torch"] / med["rust"]
    # Each precision against its PyTorch twins' best (fastest) configuration in this run.
    twins = {"rust": ["torch", "torch-malloc", "torch-fused", "torch-compile-malloc", "torch-compile-forward-malloc"],
             "rust-bf16": ["torch-autocast", "torch-autocast-malloc", "torch-compile-autocast-malloc", "torch-compile-forward-autocast-malloc"]}
    verdicts = []
    for ours, theirs in twins.items():
        have = [t for t in theirs if t in med]
        if ours in med and have:
            best = min(have, key=lambda t: med[t])
            r, goal = med[best] / med[ours], GOALS[ours]
            verdicts.append(f"{dict(TOOLS)[ours]} vs PyTorch's best configuration of that precision ({dict(TOOLS)[best]}, "
                            f"{med[best]:.3f} s): **{r:.2f}×** (goal ≥ {goal}×: {'meets' if r >= goal else 'misses'} it)")
    # The step's matrix products: forward x·W and backward dX, dW of each decoder layer (the
    # first layer's dX too: the latents are learned), 2·m·k·n flop each.
    sizes = [5 + t0["covariate_columns"], 256, 1024, t0["genes"]]
    step_gflop = sum(3 * 2 * batch * a * c for a, c in zip(sizes, sizes[1:])) / 1e9
    if args.gemm_bench and os.path.exists(args.gemm_bench):
        rates = {}
        for line in open(args.gemm_bench):
            m = re.match(r"\| (candle f32|oneDNN bf16) \| [^|]+ \| [\d.]+ \| (\d+) \|", line)
            if m:
                rates[m.group(1)] = max(rates.get(m.group(1), 0), float(m.group(2)))
        for ours, backend in (("rust", "candle f32"), ("rust-bf16", "oneDNN bf16")):
            if ours in med and backend in rates:
                ideal = step_gflop / rates[backend]
                frac = ideal / med[ours]
                goal = f" (goal ≥ {ROOFLINE_GOAL:.0%}: {'meets' if frac >= ROOFLINE_GOAL else 'misses'} it)" if ours == "rust-bf16" else ""
                verdicts.append(f"{dict(TOOLS)[ours]}: the step's {step_gflop:.0f} GFLOP of matrix products at the "
                                f"{rates[backend]:.0f} GFLOP/s {backend} reaches on the big layer alone take {ideal:.3f} s: "
                                f"the step is at **{frac:.0%}** of that roofline{goal}")
    lines = [
        f"# DGD training step: candle vs PyTorch ({datetime.datetime.now(datetime.timezone.utc):%F %H:%M UTC})",
        "",
        f"Model [{5} + {t0['covariate_columns']}, 256, 1024, {t0['genes']}], batch {batch} cells "
        f"({t0['batch_nonzeros']:,} non-zeros), {threads} threads, {t0['train_cells']:,} training cells "
        f"(latents N × 5); NB loss with lgamma, 1-component GMM prior, three Adam groups. "
        f"{t0['steps']} steps per run, mean over steps 2..{t0['steps']}; median over "
        f"{len(res['rust'])} runs each (alternating).",
        "",
        "| tool | s / step | cells / s | vs PyTorch |",
        "|---|---:|---:|---:|",
    ]
    for key, name in TOOLS:
        if key in med:
            lines.append(f"| {name} | {med[key]:.3f} | {batch / med[key]:.0f} | {med['torch'] / med[key]:.2f}× |")
    lines += [
        "",
        f"candle / PyTorch (as installed) throughput: {ratio:.2f}×"
        + (f"; against PyTorch with the same malloc settings as pgen-train: {med['torch-malloc'] / med['rust']:.2f}×." if "torch-malloc" in med else "."),
        "",
        *[f"- {v}" for v in verdicts],
        "",
        f"First-step loss (PyTorch, its own random init): {t0['first_loss']:.1f} per cell "
        f"(NB NLL {t0['first_nll_per_cell']:.1f}); pgen-train's bench does not print its loss.",
        "",
        f"Versions: torch {t0['torch']} (torch.get_num_threads() = {t0['num_threads']}); {args.rust_version}.",
        f"Machine: {args.machine}.",
        "",
        "Every run (load = 1-min load average before → after; other CPUs = CPUs other processes kept busy "
        f"during the run, from /proc/stat; `*` above {BUSY}):",
        "",
        "| tool | run | s / step | cells / s | step seconds | load | other CPUs | own CPU / wall |",
        "|---|---|---:|---:|---|---|---:|---:|",
    ]
    for key, name in TOOLS:
        for x in res.get(key, []):
            r = x["r"]
            o = x["other"]
            flag = "" if o is None or o <= BUSY else " *"
            lines.append(
                f"| {name} | {x['run']} | {r['seconds_per_step']:.3f} | {r['cells_per_second']:.0f} | "
                f"{', '.join(f'{s:.2f}' for s in r['step_seconds'])} | {x['load'][0]} → {x['load'][1]} | "
                f"{'?' if o is None else f'{o:.2f}'}{flag} | {x['cpu_per_wall']:.2f} |"
            )
    text = "\n".join(lines) + "\n"
    open(args.out, "w").write(text)
    print(text)


if __name__ == "__main__":
    main()
