"""Collect each route's overall MRRMSE (the `ALL` row of its score table) into one table."""
import csv
import os
import sys

sys.stderr = open(snakemake.log[0], "w")  # noqa: F821 (snakemake injects it)

rows = []
for path in snakemake.input:  # noqa: F821
    route = os.path.splitext(os.path.basename(path))[0]
    with open(path, newline="") as fh:
        overall = [r for r in csv.DictReader(fh) if r["cell_type"] == "ALL"]
    if len(overall) != 1:
        raise ValueError(f"{path}: expected one ALL row")
    rows.append((route, float(overall[0]["rmse"])))
rows.sort(key=lambda r: r[1])
tmp = snakemake.output[0] + ".tmp"  # noqa: F821
with open(tmp, "w", newline="") as fh:
    w = csv.writer(fh)
    w.writerow(["route", "mrrmse"])
    for route, score in rows:
        w.writerow([route, repr(score)])
os.replace(tmp, snakemake.output[0])  # noqa: F821
