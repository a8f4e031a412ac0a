"""A sweep's rows side by side (rule sweep_table): the swept settings, every route's MRRMSE
(also OP3's: the truth clipped to ±4, and the mean Pearson), the best route (by the row's
leaderboard.metric: the first row of its scores.csv), the inner-hold-out MRRMSE of the routes that have an inner run (xgb, forest,
zero: the number to choose a setting on, since the scored pairs are the test set), each model's
validation log-likelihood per cell, its transfer probe (workflow/rules/generate.smk) and the seconds of the row's own jobs (from their benchmark
files; stages shared with the main run are not counted), as a CSV and a three-panel PNG."""
import csv
import glob
import json
import os
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821 (snakemake injects it)

import matplotlib  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

inputs = snakemake.input  # noqa: F821
rows = json.loads(snakemake.params.rows)  # noqa: F821


# scores.csv columns carried per route, and their prefix in the sweep table.
METRIC_COLUMNS = {"mrrmse": "mrrmse", "mrrmse_clip4": "clipped_mrrmse", "pearson": "pearson"}


def scores_of(path):
    """{route: {metric: value}} of a scores.csv, best first (the noise ceiling left out)."""
    with open(path, newline="") as fh:
        return {r["route"]: {m: float(r[m]) for m in METRIC_COLUMNS} for r in csv.DictReader(fh) if r["kind"] != "reference"}


def loglik_of(path):
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            if r["cell_type"] == "all" and not r["name"].startswith("baseline"):
                return float(r["mean_loglik_per_cell"])
    raise ValueError(f"{path}: no `all` row of the model")


def probe_of(path):
    """The probe's mean over the target pairs: the model's LFC from the targets' own controls
    against the truth's logFC (Pearson)."""
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            if (r["cell_type"], r["sm_name"]) == ("ALL", "MEAN"):
                return float(r["logfc_model_controls"])
    raise ValueError(f"{path}: no ALL,MEAN row")


def mrrmse(prediction, truth):
    """Mean over the truth's rows of the root mean squared error over genes (SPEC §5), rows
    matched by (cell_type, sm_name), genes by name."""
    keys = ["cell_type", "sm_name"]
    genes = [c for c in truth.columns if c not in (*keys, "sm_lincs_id", "SMILES", "control")]
    p = prediction.set_index(keys).loc[truth.set_index(keys).index, genes].to_numpy(float)
    t = truth[genes].to_numpy(float)
    return float(np.sqrt(((p - t) ** 2).mean(axis=1)).mean())


inner_truth = pd.read_parquet(inputs.inner_truth)


def own_seconds(folder):
    total = 0.0
    for path in glob.glob(os.path.join(folder, "**", "*.tsv"), recursive=True):
        with open(path, newline="") as fh:
            total += sum(float(r["s"]) for r in csv.DictReader(fh, delimiter="\t"))
    return total


keys = list(dict.fromkeys(k for r in rows for k in r["settings"]))
routes, models, inner_routes, table = [], [], [], []
for r in rows:
    scores = scores_of(inputs[f"scores~{r['row']}"])
    routes += [x for x in r["routes"] if x not in routes]  # the workflow's route order
    logliks, inner, probes = {}, {}, {}
    for name in inputs.keys():
        kind, _, rest = name.partition("~")
        row, _, what = rest.partition("~")
        if kind == "loglik" and row == r["row"]:
            logliks[what] = loglik_of(inputs[name])
            models += [what] if what not in models else []
        if kind == "probe" and row == r["row"]:
            probes[what] = probe_of(inputs[name])
        if kind == "inner" and row == r["row"]:
            inner[what] = mrrmse(pd.read_parquet(inputs[name]), inner_truth)
            inner_routes += [what] if what not in inner_routes else []
    best = next(iter(scores))
    per_route = {f"{prefix}_{x}": s[m] for m, prefix in METRIC_COLUMNS.items() for x, s in scores.items()}
    table.append({"row": r["row"], **r["settings"], "best_route": best, "best_mrrmse": scores[best]["mrrmse"],
                  **per_route, **{f"inner_mrrmse_{x}": s for x, s in inner.items()},
                  **{f"loglik_{m}": v for m, v in logliks.items()}, **{f"probe_{m}": v for m, v in probes.items()}, "own_seconds": round(own_seconds(r["benchmarks"]), 2)})

columns = ["row", *keys, "best_route", "best_mrrmse", *(f"{prefix}_{x}" for prefix in METRIC_COLUMNS.values() for x in routes), *(f"inner_mrrmse_{x}" for x in inner_routes), *(f"loglik_{m}" for m in models), *(f"probe_{m}" for m in models if any(f"probe_{m}" in t for t in table)), "own_seconds"]
tmp = snakemake.output.table + ".tmp"  # noqa: F821
with open(tmp, "w", newline="") as fh:
    w = csv.DictWriter(fh, fieldnames=columns, restval="")
    w.writeheader()
    for t in table:
        w.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in t.items()})
os.replace(tmp, snakemake.output.table)  # noqa: F821

names = [t["row"] for t in table]
fig, axes = plt.subplots(1, 3, figsize=(16, 0.45 * len(names) * max(1, len(routes)) / 3 + 3.5), sharey=True,
                         gridspec_kw={"width_ratios": [2, 1, 1]})
y = list(range(len(names)))
height = 0.8 / max(1, len(routes))
colours = plt.get_cmap("tab20").colors
for i, route in enumerate(routes):
    axes[0].barh([k - 0.4 + (i + 0.5) * height for k in y], [t.get(f"mrrmse_{route}", float("nan")) for t in table],
                 height, label=route, color=colours[i % len(colours)])
for k, t in zip(y, table):
    axes[0].annotate(f"best: {t['best_route']} {t['best_mrrmse']:.4f}", (0, k + 0.42), fontsize=8, va="bottom")
axes[0].set_yticks(y, names)
axes[0].set_xlabel("MRRMSE on the targets (lower is better)")
axes[0].legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=min(6, len(routes)))
markers = "os^Dv<>"
for i, m in enumerate(models):
    axes[1].scatter([t.get(f"loglik_{m}", float("nan")) for t in table], y, marker=markers[i % len(markers)], s=50, label=m)
axes[1].set_xlabel("validation NB log-likelihood per cell\n(higher is better)")
if models:
    axes[1].legend(fontsize=7)
    axes[1].margins(x=0.25)
else:
    axes[1].text(0.5, 0.5, "no models trained", ha="center", transform=axes[1].transAxes)
axes[2].barh(y, [t["own_seconds"] for t in table], 0.5, color="grey")
for k, t in zip(y, table):
    axes[2].annotate(f"{t['own_seconds']:.1f} s", (t["own_seconds"], k), fontsize=8, va="center", xytext=(3, 0), textcoords="offset points")
axes[2].set_xlabel("seconds of the row's own jobs\n(shared stages not counted)")
axes[2].margins(x=0.2)
for ax in axes:
    ax.grid(axis="x", alpha=0.3)
fig.suptitle(f"sweep {snakemake.wildcards.sweep}: " + ", ".join(keys))  # noqa: F821
fig.tight_layout()
tmp = snakemake.output.plot + ".tmp.png"  # noqa: F821
fig.savefig(tmp, dpi=110)
os.replace(tmp, snakemake.output.plot)  # noqa: F821
