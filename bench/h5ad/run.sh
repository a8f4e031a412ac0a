#!/usr/bin/env bash
# h5ad ingest benchmark: pgen-ingest --h5ad against anndata.read_h5ad -> scipy CSR on a
# Kaggle-scale simulated data set (bench/out/kaggle, made by bench/ingest/run.sh or here).
# Run from the repository root, on demand (not part of CI); REPS=3 THREADS=2 by default.
# Writes bench/out/h5ad/ (gitignored): the .h5ad, GNU time outputs, and results.md.
set -euo pipefail
REPS=${REPS:-3}
THREADS=${THREADS:-2}
PYTHON=${PYTHON:-.venv/bin/python}
DATA=${DATA:-bench/out/kaggle}
OUT=bench/out/h5ad
H5AD=$OUT/kaggle.h5ad
[[ -f Cargo.toml && -d bench/h5ad ]] || { echo "run from the repository root" >&2; exit 2; }
export OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS RAYON_NUM_THREADS=$THREADS
mkdir -p "$OUT"
if [[ ! -f $DATA/adata_train.parquet ]]; then
    target/release/pgen-simulate --set preset=kaggle --set layout=../shared/kaggle-layout --threads "$THREADS" --out "$DATA"
fi
[[ -f $H5AD ]] || "$PYTHON" bench/h5ad/make_h5ad.py "$DATA" "$H5AD"
cat "$H5AD" > /dev/null   # page cache
for r in $(seq 1 "$REPS"); do
    /usr/bin/time -v -o "$OUT/rust.$r.time" target/release/pgen-ingest --h5ad "$H5AD" --genes "$DATA/genes.txt" \
        --threads "$THREADS" --out-counts "$OUT/counts.parquet" --out-obs "$OUT/obs.parquet" --summary "$OUT/summary.$r.json" 2> "$OUT/rust.$r.log"
    /usr/bin/time -v -o "$OUT/anndata.$r.time" "$PYTHON" bench/h5ad/anndata_read.py "$H5AD" > "$OUT/anndata.$r.json"
done
"$PYTHON" - "$OUT" "$REPS" <<'PY'
import json, re, statistics, sys
out, reps = sys.argv[1], int(sys.argv[2])
def gnu(path):
    t = open(path).read()
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1)) / 1048576
    return rss
rust_load = [json.load(open(f"{out}/summary.{r}.json"))["load_seconds"] for r in range(1, reps + 1)]
rust_rss = [json.load(open(f"{out}/summary.{r}.json"))["peak_rss_bytes_after_load"] / 2**30 for r in range(1, reps + 1)]
py = [json.load(open(f"{out}/anndata.{r}.json")) for r in range(1, reps + 1)]
py_s = [p["seconds"] for p in py]
py_rss = [gnu(f"{out}/anndata.{r}.time") for r in range(1, reps + 1)]
s = json.load(open(f"{out}/summary.1.json"))
csr = s["csr_bytes"] / 2**30
assert s["nonzeros"] == py[0]["nnz"] and s["cells"] == py[0]["cells"], (s, py[0])
lines = [f"{s['cells']:,} cells x {s['genes']:,} genes, {s['nonzeros']:,} non-zeros; CSR {csr:.2f} GiB; median of {reps}",
         "", "| tool | load s | peak RSS GiB | RSS / CSR |", "|---|---:|---:|---:|",
         f"| pgen-ingest --h5ad | {statistics.median(rust_load):.1f} | {statistics.median(rust_rss):.2f} | {statistics.median(rust_rss) / csr:.2f} |",
         f"| anndata.read_h5ad -> CSR | {statistics.median(py_s):.1f} | {statistics.median(py_rss):.2f} | {statistics.median(py_rss) / csr:.2f} |"]
open(f"{out}/results.md", "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
