#!/usr/bin/env bash
# The GPU check (issue 14), one command on a machine with an NVIDIA GPU, nvcc and cargo:
#
#     bash bench/gpu/check.sh            # from the repository root
#
# 1. builds pgen-train/pgen-simulate/pgen-ingest with `--features cuda` (own target dir
#    target/cuda, so the CPU build stays as it is);
# 2. runs the device tests (crates/perturbgen-models/tests/device.rs: the NB op's values and
#    gradients on the device against the CPU, a toy training run's losses device vs CPU);
# 3. times the DGD bench step (bench/dgd's setup: [5 + 108, 256, 1024, 18211], batch 1024, the
#    same 30,000 Kaggle-scale cells) on the CPU (f32, and bf16 where the CPU has the units) and
#    on the device, and prints one table (bench/out/gpu_results.md).
# Cargo needs its registry (or a vendored copy: `cargo vendor` + .cargo/config.toml) to build.
# Not part of CI (no GPU there). THREADS (CPU threads, default all), STEPS (10), CELLS (30000).
set -euo pipefail
[[ -f Cargo.toml && -d bench/gpu ]] || { echo "run from the repository root" >&2; exit 2; }
STEPS=${STEPS:-10}
CELLS=${CELLS:-30000}
THREADS=${THREADS:-$(nproc)}
OUT=${OUT:-bench/out/gpu}
LAYOUT=${LAYOUT:-../shared/kaggle-layout}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/cuda}
BIN=$CARGO_TARGET_DIR/release
mkdir -p "$OUT"
RESULTS=${RESULTS:-bench/out/gpu_results.md}

command -v nvidia-smi > /dev/null || { echo "error: nvidia-smi not found: this check needs an NVIDIA GPU" >&2; exit 2; }
command -v nvcc > /dev/null || { echo "error: nvcc not found (CUDA toolkit): candle's cuda feature compiles kernels with it" >&2; exit 2; }
gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1)
echo "== GPU: $gpu; $(nvcc --version | tail -1)"

echo "== build (--features cuda, $CARGO_TARGET_DIR)"
cargo build --release -p pgen-train --features pgen-train/cuda -p pgen-simulate -p pgen-ingest 2>&1 | tail -3

echo "== device tests (NB op and toy training, device vs CPU)"
tests_ok=passed
cargo test --release -p perturbgen-models --features cuda --test device 2>&1 | tee "$OUT/device_tests.txt" | grep -E "^test |test result" || true
grep -q "test result: ok" "$OUT/device_tests.txt" || tests_ok="FAILED (see $OUT/device_tests.txt)"

COUNTS=$OUT/counts.parquet OBS=$OUT/obs.parquet VAL=$OUT/validation_ids.txt
if [[ ! -f $COUNTS ]]; then
    echo "== data: $CELLS Kaggle-scale cells"
    layout=(); [[ -d $LAYOUT ]] && layout=(--set layout="$LAYOUT")
    "$BIN/pgen-simulate" --set preset=kaggle "${layout[@]}" --set cells="$CELLS" --set seed=0 --threads "$THREADS" --out "$OUT/sim"
    "$BIN/pgen-ingest" --counts "$OUT/sim/adata_train.parquet" --obs "$OUT/sim/adata_obs_meta.csv" \
        --excluded "$OUT/sim/adata_excluded_ids.csv" --threads "$THREADS" --out-counts "$COUNTS" --out-obs "$OBS"
    # Every 30th cell for validation, as bench/dgd does (obs order = the counts' order).
    python3 -c "import pyarrow.parquet as pq, sys; ids = pq.read_table(sys.argv[1], columns=['obs_id']).column(0).to_pylist(); open(sys.argv[2], 'w').write(''.join(i + '\n' for i in ids[::30]))" "$OBS" "$VAL"
fi

step() {  # step LABEL pgen-train settings...
    local label=$1; shift
    local json
    json=$("$BIN/pgen-train" --model dgd --bench-steps "$STEPS" --set common.batch_size=1024 --threads "$THREADS" \
        --counts "$COUNTS" --obs "$OBS" --validation "$VAL" --out-dir "$OUT/train" "$@" 2> "$OUT/${label// /_}.log") \
        || { echo "| $label | failed: $(tail -1 "$OUT/${label// /_}.log") | |"; return; }
    python3 -c "import json, sys; r = json.loads(sys.argv[1]); print(f\"| {sys.argv[2]} | {r['seconds_per_step']:.4f} | {r['cells_per_second']:.0f} |\")" "$json" "$label"
}
{
    echo "# DGD bench step: device vs CPU ($(date -u '+%F %H:%M UTC'))"
    echo
    echo "GPU: $gpu. CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $THREADS threads."
    echo "Device tests (NB op values and gradients, toy training, device vs CPU): $tests_ok."
    echo
    echo "| run | s / step | cells / s |"
    echo "|---|---:|---:|"
    step "CPU f32" --set precision=f32
    grep -qwE 'amx_bf16|avx512_bf16' /proc/cpuinfo && step "CPU bf16" --set precision=bf16
    step "cuda f32" --set device=cuda --set precision=f32
    step "cuda bf16" --set device=cuda --set precision=bf16
} | tee "$RESULTS"
