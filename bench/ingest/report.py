#!/usr/bin/env python3
"""Summarises the ingest benchmark runs written by run.sh into a markdown table.

Reads <dir>/{rust,pandas}/run*/time.txt (GNU `/usr/bin/time -v` output) and summary.json, takes
the median of each measure over the repetitions, checks the memory rule for pgen-ingest (peak RSS
at most 1.5x its in-memory CSR + obs) and writes <dir>/../ingest_results.md (or --out).
"""
import argparse
import glob
import json
import os
import re
import statistics
import sys

GIB = 2**30
RULE = 1.5
BUSY = 0.1  # CPUs used by other processes during a run above which its time is flagged


def parse_time(path):
    text = open(path).read()
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text).group(1)
    secs = 0.0
    for part in wall.split(":"):
        secs = secs * 60 + float(part)
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
    status = int(re.search(r"Exit status: (\d+)", text).group(1))
    cpu = sum(float(re.search(rf"{k} time \(seconds\): (\S+)", text).group(1)) for k in ("User", "System"))
    return {"wall_s": secs, "max_rss_bytes": rss_kb * 1024, "exit": status, "cpu_s": cpu}


def other_cpu(d, t):
    """CPUs (on average) that other processes kept busy during the run, from /proc/stat."""
    try:
        def busy(name):
            f = [int(x) for x in open(os.path.join(d, name)).read().split()[1:]]
            return f[0] + f[1] + f[2] + f[5] + f[6] + f[7]  # user nice system irq softirq steal
        secs = (busy("stat_after") - busy("stat_before")) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None
    return max(0.0, (secs - t["cpu_s"]) / t["wall_s"])


def runs(root, tool):
    out = []
    for d in sorted(glob.glob(os.path.join(root, tool, "run*"))):
        t = parse_time(os.path.join(d, "time.txt"))
        if t["exit"] != 0:
            sys.exit(f"error: {d} exited with status {t['exit']}")
        s = json.load(open(os.path.join(d, "summary.json")))
        out.append({
            "run": os.path.basename(d),
            "load_s": s["load_seconds"],
            "wall_s": t["wall_s"],
            "rss": t["max_rss_bytes"],
            "rss_load": s["peak_rss_bytes_after_load"],
            "cpu_s": t["cpu_s"],
            "data": s["csr_bytes"] + s["obs_bytes"],
            "csr": s["csr_bytes"],
            "obs": s["obs_bytes"],
            "summary": s,
            "other_cpu": other_cpu(d, t),
            "contended": os.path.exists(os.path.join(d, "contended")),
        })
    if not out:
        sys.exit(f"error: no runs under {root}/{tool}")
    return out


def med(rs, key):
    return statistics.median(r[key] for r in rs)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("dir", help="bench/out/ingest")
    p.add_argument("--out")
    p.add_argument("--compare", help="compare.json written by compare.py")
    p.add_argument("--machine", default="")
    args = p.parse_args()
    out_path = args.out or os.path.join(os.path.dirname(os.path.abspath(args.dir)), "ingest_results.md")

    tools = {"pgen-ingest (Rust)": runs(args.dir, "rust"), "pandas + pyarrow → scipy CSR": runs(args.dir, "pandas")}
    med_ = {name: {k: med(rs, k) for k in ("load_s", "wall_s", "rss", "rss_load", "data", "csr", "obs")} for name, rs in tools.items()}
    rust, pand = med_["pgen-ingest (Rust)"], med_["pandas + pyarrow → scipy CSR"]
    rs0 = tools["pgen-ingest (Rust)"][0]["summary"]
    ps0 = tools["pandas + pyarrow → scipy CSR"][0]["summary"]
    n_reps = {name: len(rs) for name, rs in tools.items()}

    L = []
    L.append(f"### Ingest benchmark: {rs0['cells']:,} cells × {rs0['genes']:,} genes, {rs0['nonzeros']:,} non-zeros")
    L.append("")
    if args.machine:
        L.append(args.machine)
        L.append("")
    L.append(f"Median of {', '.join(f'{n} {k.split()[0]}' for k, n in n_reps.items())} runs (alternating); 2 threads each.")
    L.append("")
    L.append("| tool | load s | total wall s | peak RSS GiB | peak RSS after load GiB | CSR+obs GiB | RSS / (CSR+obs) |")
    L.append("|---|---:|---:|---:|---:|---:|---:|")
    for name, m in med_.items():
        L.append(f"| {name} | {m['load_s']:.1f} | {m['wall_s']:.1f} | {m['rss'] / GIB:.2f} | {m['rss_load'] / GIB:.2f} | "
                 f"{m['data'] / GIB:.2f} | {m['rss'] / m['data']:.2f} |")
    L.append("")
    L.append(f"- pandas CSR: data {ps0['dtypes']['data']}, indices {ps0['dtypes']['indices']}, indptr {ps0['dtypes']['indptr']} "
             f"({pand['csr'] / GIB:.2f} GiB) + obs DataFrame ({pand['obs'] / GIB:.2f} GiB, `memory_usage(deep=True)`); "
             f"Rust CSR: u32 data, u32 indices, u64 indptr ({rust['csr'] / GIB:.2f} GiB) + obs table ({rust['obs'] / GIB:.2f} GiB).")
    L.append(f"- pandas peak RSS relative to the Rust CSR+obs: {pand['rss'] / rust['data']:.2f}×.")
    L.append(f"- Rust / pandas: load time {rust['load_s'] / pand['load_s']:.2f}× (pandas/Rust {pand['load_s'] / rust['load_s']:.2f}×), "
             f"total wall {rust['wall_s'] / pand['wall_s']:.2f}× (pandas/Rust {pand['wall_s'] / rust['wall_s']:.2f}×), "
             f"peak RSS {rust['rss'] / pand['rss']:.2f}× (pandas/Rust {pand['rss'] / rust['rss']:.2f}×).")
    L.append("- Rust total wall includes writing the cache (counts.parquet + obs.parquet); pandas total wall includes "
             "starting Python and importing pandas/pyarrow/scipy.")
    worst_total = max(r["rss"] / r["data"] for r in tools["pgen-ingest (Rust)"])
    worst_load = max(r["rss_load"] / r["data"] for r in tools["pgen-ingest (Rust)"])
    ok_total, ok_load = worst_total <= RULE, worst_load <= RULE
    L.append(f"- Memory rule (pgen-ingest peak RSS ≤ {RULE}× CSR+obs), worst run: whole process {worst_total:.2f}× "
             f"→ **{'PASS' if ok_total else 'FAIL'}**; during load (VmHWM after load) {worst_load:.2f}× "
             f"→ **{'PASS' if ok_load else 'FAIL'}**.")
    if args.compare and os.path.exists(args.compare):
        c = json.load(open(args.compare))
        L.append(f"- Same matrix: **{'yes' if c['match'] else 'NO'}** (nnz {c['nonzeros']:,}, total count {c['total_counts']:,}, "
                 f"every cell's total and non-zeros, every gene's total, checksum {c['checksum']} of all (cell, gene, count)).")
    L.append(f"- Gene order: {ps0['gene_order']} (both tools).")
    L.append("")
    for rs in tools.values():
        for r in rs:
            r["contended"] = r["contended"] or (r["other_cpu"] or 0) > BUSY
    n_cont = sum(r["contended"] for rs in tools.values() for r in rs)
    if n_cont:
        L.append(f"- **Warning**: other processes (a cargo/rustc build, or > {BUSY} CPUs busy) ran during {n_cont} of the timed runs (marked * below); their times are inflated.")
        L.append("")
    L.append("<details><summary>Every run</summary>")
    L.append("")
    L.append("| tool | run | load s | total wall s | CPU s (user+sys) | peak RSS GiB | peak RSS after load GiB | other processes' CPUs |")
    L.append("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, rs in tools.items():
        for r in rs:
            L.append(f"| {name} | {r['run']}{' *' if r['contended'] else ''} | {r['load_s']:.2f} | {r['wall_s']:.2f} | {r['cpu_s']:.1f} | {r['rss'] / GIB:.3f} | {r['rss_load'] / GIB:.3f} | "
                     f"{'n/a' if r['other_cpu'] is None else format(r['other_cpu'], '.2f')} |")
    L.append("")
    v = ps0["versions"]
    L.append(f"Python {v['python']}, pandas {v['pandas']}, pyarrow {v['pyarrow']}, numpy {v['numpy']}, scipy {v['scipy']}.")
    L.append("</details>")
    text = "\n".join(L) + "\n"
    with open(out_path, "w") as f:
        f.write(text)
    print(text)
    print(f"memory rule (Rust, whole process): {'PASS' if ok_total else 'FAIL'} ({worst_total:.2f}x, limit {RULE}x)")
    print(f"memory rule (Rust, during load):   {'PASS' if ok_load else 'FAIL'} ({worst_load:.2f}x, limit {RULE}x)")


if __name__ == "__main__":
    main()
