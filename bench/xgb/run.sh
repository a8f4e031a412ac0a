#!/usr/bin/env bash
# XGBoost benchmark: pgen-xgb (Rust, XGBoost 1.6.2 through its C API, genes in parallel with
# rayon) against Python xgboost 1.6.2 doing the same per-gene fits on the same data. One run
# each (the fits are deterministic; the predictions are compared). Run from the repository
# root, on demand (not part of CI):
#
#     bash bench/xgb/run.sh          # GENES=all THREADS=2 ROUNDS=100 MODES="loop pool"
#
# Needs target/release/pgen-xgb and .venv with xgboost==1.6.2 (scripts/setup). Writes under
# bench/out/xgb/ (gitignored) and the table bench/out/xgb_results.md.
set -euo pipefail

THREADS=${THREADS:-2}
ROUNDS=${ROUNDS:-100}
GENES=${GENES:-}
MODES=${MODES:-loop pool}
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${OUT:-bench/out/xgb}
TIME=/usr/bin/time
XGB=target/release/pgen-xgb
HERE=bench/xgb

[[ -f Cargo.toml && -d $HERE ]] || { echo "run from the repository root" >&2; exit 2; }
[[ -x $XGB ]] || { echo "$XGB is missing: cargo build --release -p pgen-xgb" >&2; exit 2; }
[[ -x $TIME ]] || { echo "$TIME (GNU time) is missing: apt-get install time" >&2; exit 2; }
"$PYTHON" -c 'import xgboost, pandas, pyarrow; assert xgboost.__version__ == "1.6.2"' \
    || { echo "$PYTHON lacks xgboost==1.6.2 / pandas / pyarrow (scripts/setup)" >&2; exit 2; }
if pgrep -x cargo > /dev/null || pgrep -x rustc > /dev/null; then
    echo "warning: a cargo/rustc build is running: timings will be inflated (2 cores)" >&2
fi
export OMP_WAIT_POLICY=passive OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1

mkdir -p "$OUT"
echo "== data"
"$PYTHON" $HERE/make_data.py --out "$OUT" ${GENES:+--genes "$GENES"}

wall() { awk -F': ' '/Elapsed \(wall clock\)/ {n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s}' "$1"; }
rss() { awk -F': ' '/Maximum resident/ {printf "%.2f", $2 / 1048576}' "$1"; }

echo "== pgen-xgb --threads $THREADS"
"$TIME" -v -o "$OUT/rust.time" "$XGB" --de-train "$OUT/de_train.parquet" --targets "$OUT/targets.csv" \
    --set "rounds=$ROUNDS" --threads "$THREADS" --out "$OUT/rust.parquet" 2> "$OUT/rust.stderr"
grep -h "fitted" "$OUT/rust.stderr" || true
rust_s=$(wall "$OUT/rust.time")

{
    echo "| tool | parallelism | wall s | peak RSS GiB | vs pgen-xgb |"
    echo "|---|---|---:|---:|---:|"
    echo "| pgen-xgb | rayon, $THREADS threads × 1 XGBoost thread | $rust_s | $(rss "$OUT/rust.time") | 1.00 |"
} > "$OUT/table.md"
for mode in $MODES; do
    echo "== python xgboost, mode $mode"
    "$TIME" -v -o "$OUT/python_$mode.time" "$PYTHON" $HERE/python_xgb.py --de-train "$OUT/de_train.parquet" \
        --targets "$OUT/targets.csv" --rounds "$ROUNDS" --threads "$THREADS" --mode "$mode" \
        --out "$OUT/python_$mode.parquet" 2> "$OUT/python_$mode.stderr"
    s=$(wall "$OUT/python_$mode.time")
    case $mode in
        loop) par="loop over genes, XGBoost nthread=$THREADS" ;;
        pool) par="$THREADS processes × 1 XGBoost thread" ;;
    esac
    echo "| python xgboost | $par | $s | $(rss "$OUT/python_$mode.time") | $(awk -v a="$s" -v b="$rust_s" 'BEGIN {printf "%.2f", a / b}') |" >> "$OUT/table.md"
    "$PYTHON" - "$OUT/rust.parquet" "$OUT/python_$mode.parquet" <<'PY' | tee -a "$OUT/compare.txt"
import sys, numpy as np, pandas as pd
r, p = pd.read_parquet(sys.argv[1]), pd.read_parquet(sys.argv[2])
assert list(r.columns) == list(p.columns) and (r["sm_name"] == p["sm_name"]).all()
g = r.columns[5:]
print(f"{sys.argv[2]}: max |rust - python| = {np.abs(r[g].to_numpy() - p[g].to_numpy()).max():.3g} over {r[g].size} values")
PY
done
{
    echo "XGBoost benchmark ($(date -u +%F), $(nproc) cores, $ROUNDS rounds, $(head -c 0 /dev/null)$("$PYTHON" -c "import pandas as pd; d = pd.read_parquet('$OUT/de_train.parquet'); print(f'{len(d)} rows × {d.shape[1] - 5} genes')"))"
    echo
    cat "$OUT/table.md"
} > bench/out/xgb_results.md
cat bench/out/xgb_results.md
