#!/usr/bin/env bash
# Ingest benchmark: pgen-ingest vs pandas + pyarrow -> scipy CSR on a Kaggle-scale simulated
# adata_train.parquet. Run from the repository root, on demand (not part of CI):
#
#     bench/ingest/run.sh            # REPS=3 THREADS=2 by default
#
# Needs target/release/pgen-simulate and pgen-ingest (cargo build --release) and a Python with
# pandas, pyarrow, numpy, scipy (.venv/bin/python, or set PYTHON). Writes under bench/out/
# (gitignored): the data set bench/out/kaggle/ (made once, ~0.9 GB), the runs bench/out/ingest/,
# and the table bench/out/ingest_results.md. See bench/ingest/README.md.
set -euo pipefail

REPS=${REPS:-3}
THREADS=${THREADS:-2}
PYTHON=${PYTHON:-.venv/bin/python}
DATA=${DATA:-bench/out/kaggle}
OUT=${OUT:-bench/out/ingest}
RESULTS=${OUT}_results.md     # bench/out/ingest_results.md
TIME=/usr/bin/time
SIMULATE=target/release/pgen-simulate
INGEST=target/release/pgen-ingest
HERE=bench/ingest

[[ -f Cargo.toml && -d $HERE ]] || { echo "run from the repository root" >&2; exit 2; }
for b in "$SIMULATE" "$INGEST"; do
    [[ -x $b ]] || { echo "$b is missing: cargo build --release" >&2; exit 2; }
done
[[ -x $TIME ]] || { echo "$TIME (GNU time) is missing: apt-get install time" >&2; exit 2; }
"$PYTHON" -c 'import pandas, pyarrow, numpy, scipy' || { echo "$PYTHON lacks pandas/pyarrow/numpy/scipy" >&2; exit 2; }

# Every thread pool a library might start: 2 threads for both tools.
export OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS \
    NUMEXPR_MAX_THREADS=$THREADS RAYON_NUM_THREADS=$THREADS

COUNTS=$DATA/adata_train.parquet
OBS=$DATA/adata_obs_meta.csv
EXCLUDED=$DATA/adata_excluded_ids.csv
if [[ ! -f $COUNTS || ! -f $OBS || ! -f $EXCLUDED ]]; then
    echo "== generating the Kaggle-scale data set in $DATA (about a minute, ~0.9 GB)"
    "$SIMULATE" --set preset=kaggle --set layout=../shared/kaggle-layout --threads "$THREADS" --out "$DATA"
fi

rm -rf "$OUT/rust" "$OUT/pandas" "$OUT/verify"
mkdir -p "$OUT/rust/cache" "$OUT/verify"

avail_gib=$(awk '/MemAvailable/ {printf "%d", $2 / 1048576}' /proc/meminfo)
if (( avail_gib < 16 )); then
    echo "warning: only ${avail_gib} GiB available; the pandas baseline needs about 10-16 GiB" >&2
fi

building() { pgrep -x cargo > /dev/null || pgrep -x rustc > /dev/null; }
if building; then
    echo "note: a cargo/rustc build is running; each timed run waits for it (QUIET_WAIT=${QUIET_WAIT:-1800} s)" >&2
fi

echo "== warming the page cache ($(du -h "$COUNTS" | cut -f1) parquet)"
cat "$COUNTS" "$OBS" "$EXCLUDED" > /dev/null

# Before each timed run, wait (up to QUIET_WAIT seconds, default 30 min) until the machine has
# been idle (< 10% of its CPUs busy) for 20 s. Each run saves /proc/stat before and after, so
# report.py can tell how much CPU other processes used meanwhile (and a cargo/rustc build seen
# during the run leaves <dir>/contended).
busy() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }
quiet() {
    local waited=0 calm=0 b0 t0 b1 t1
    while (( calm < 20 && waited < ${QUIET_WAIT:-1800} )); do
        read -r b0 t0 < <(busy); sleep 2; read -r b1 t1 < <(busy)
        if (( (b1 - b0) * 10 < (t1 - t0) )) && ! building; then calm=$((calm + 2)); else calm=0; fi
        waited=$((waited + 2))
    done
    (( calm >= 20 )) || echo "warning: machine still busy after ${QUIET_WAIT:-1800} s; timing anyway" >&2
}
timed() { # dir command...
    local d=$1; shift
    quiet
    ( while :; do building && touch "$d/contended"; sleep 1; done ) &
    local watcher=$!
    local rc=0
    grep '^cpu ' /proc/stat > "$d/stat_before"
    "$@" || rc=$?
    grep '^cpu ' /proc/stat > "$d/stat_after"
    kill "$watcher"; wait "$watcher" 2> /dev/null || true
    [[ -f $d/contended ]] && echo "   (a cargo/rustc build ran during this run: its time is inflated)" >&2
    return $rc
}
rust_run() { # dir
    "$TIME" -v -o "$1/time.txt" "$INGEST" --counts "$COUNTS" --obs "$OBS" --excluded "$EXCLUDED" \
        --threads "$THREADS" --out-counts "$OUT/rust/cache/counts.parquet" --out-obs "$OUT/rust/cache/obs.parquet" \
        --summary "$1/summary.json" -v 2> "$1/stderr.txt"
}
pandas_run() { # dir [extra args]
    local d=$1; shift
    "$TIME" -v -o "$d/time.txt" "$PYTHON" "$HERE/pandas_ingest.py" --counts "$COUNTS" --obs "$OBS" \
        --excluded "$EXCLUDED" --threads "$THREADS" --summary "$d/summary.json" "$@" 2> "$d/stderr.txt"
}
show() { # tool dir
    "$PYTHON" - "$1" "$2" <<'EOF'
import json, re, sys
tool, d = sys.argv[1:]
s = json.load(open(f"{d}/summary.json"))
t = open(f"{d}/time.txt").read()
wall = re.search(r"Elapsed \(wall clock\).*: (\S+)", t).group(1)
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1)) / 2**20
print(f"   {tool:7s} load {s['load_seconds']:6.1f} s, wall {wall}, peak RSS {rss:.2f} GiB")
EOF
}

for i in $(seq 1 "$REPS"); do
    echo "== repetition $i of $REPS"
    mkdir -p "$OUT/rust/run$i" "$OUT/pandas/run$i"
    timed "$OUT/rust/run$i" rust_run "$OUT/rust/run$i"
    show rust "$OUT/rust/run$i"
    timed "$OUT/pandas/run$i" pandas_run "$OUT/pandas/run$i"
    show pandas "$OUT/pandas/run$i"
done

echo "== checking that both build the same matrix (one more pandas run, untimed, with --verify)"
pandas_run "$OUT/verify" --verify "$OUT/verify/pandas.npz"
PYTHONPATH=$HERE "$PYTHON" "$HERE/compare.py" --rust-counts "$OUT/rust/cache/counts.parquet" \
    --rust-summary "$OUT/rust/run1/summary.json" --pandas-verify "$OUT/verify/pandas.npz" \
    --out "$OUT/verify/compare.json" || echo "warning: the matrices differ" >&2

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
mem=$(awk '/MemTotal/ {printf "%.1f", $2 / 1048576}' /proc/meminfo)
machine="Machine: $(nproc) cores (${cpu:-unknown CPU}), ${mem} GiB RAM, $(uname -sr); file $(du -h "$COUNTS" | cut -f1)B, page cache warm; $("$INGEST" --version) (sha256 $(sha256sum "$INGEST" | cut -c1-12), built $(date -u -r "$INGEST" '+%F %H:%M UTC'))."
echo "== results"
"$PYTHON" "$HERE/report.py" "$OUT" --out "$RESULTS" --compare "$OUT/verify/compare.json" --machine "$machine"
