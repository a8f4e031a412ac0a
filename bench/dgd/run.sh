#!/usr/bin/env bash
# DGD training-step benchmark: pgen-train (candle) against bench/dgd/torch_dgd.py (PyTorch, the
# identical model and loss) on the same cells, at the real sizes ([5 + 108, 256, 1024, 18211],
# batch 1024, 2 threads). Run from the repository root, on demand (not part of CI):
#
#     bash bench/dgd/run.sh          # REPS=3 STEPS=10 THREADS=2 BATCH=1024 VARIANTS=1 COMPILE_FORWARD=1
#
# Needs target/release/pgen-{simulate,ingest,train} (cargo build --release) and python3 with
# venv; PyTorch goes into its own venv bench/out/torch-venv (made once: pip install torch numpy
# pyarrow scipy, ~5 GB; set TORCH_PYTHON to use another). Writes under bench/out/ (gitignored): the
# data bench/out/dgd/ (made once), the runs bench/out/dgd/runs/, the table
# bench/out/dgd_results.md. See bench/dgd/README.md.
set -euo pipefail

REPS=${REPS:-3}
STEPS=${STEPS:-10}
THREADS=${THREADS:-2}
BATCH=${BATCH:-1024}
CELLS=${CELLS:-30000}
VARIANTS=${VARIANTS:-1}          # also time torch with a trivial loss and with fused Adam (once each)
COMPILE_FORWARD=${COMPILE_FORWARD:-1}  # also torch.compile the whole forward pass (decoder included), besides the loss and mixture
BF16=${BF16:-auto}               # also time pgen-train with precision: bf16 (auto: where the CPU has AMX/AVX512-BF16 and libdnnl.so.2 is there; 1; 0)
QUIET_WAIT=${QUIET_WAIT:-900}    # longest wait (s) for an idle machine before each timed run ...
QUIET_TOTAL=${QUIET_TOTAL:-900}  # ... and in all (then the runs go ahead, flagged in the table)
OUT=${OUT:-bench/out/dgd}
VENV=${VENV:-bench/out/torch-venv}
TORCH_PYTHON=${TORCH_PYTHON:-$VENV/bin/python}
LAYOUT=${LAYOUT:-../shared/kaggle-layout}
TIME=/usr/bin/time
SIMULATE=target/release/pgen-simulate
INGEST=target/release/pgen-ingest
TRAIN=target/release/pgen-train
HERE=bench/dgd

[[ -f Cargo.toml && -d $HERE ]] || { echo "run from the repository root" >&2; exit 2; }
for b in "$SIMULATE" "$INGEST" "$TRAIN"; do
    [[ -x $b ]] || { echo "$b is missing: cargo build --release -p pgen-train -p pgen-simulate -p pgen-ingest" >&2; exit 2; }
done
[[ -x $TIME ]] || { echo "$TIME (GNU time) is missing: apt-get install time" >&2; exit 2; }

if ! "$TORCH_PYTHON" -c 'import torch, numpy, pyarrow, scipy' 2> /dev/null; then
    [[ $TORCH_PYTHON == "$VENV/bin/python" ]] || { echo "$TORCH_PYTHON lacks torch/numpy/pyarrow/scipy" >&2; exit 2; }
    echo "== installing PyTorch into $VENV (once, ~5 GB)"
    [[ -x $VENV/bin/pip ]] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q torch numpy pyarrow scipy
fi

# Every thread pool either side might start: $THREADS threads.
export OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS RAYON_NUM_THREADS=$THREADS

COUNTS=$OUT/counts.parquet
OBS=$OUT/obs.parquet
VAL=$OUT/validation_ids.txt
mkdir -p "$OUT"
if [[ ! -f $COUNTS || ! -f $OBS || ! -f $VAL ]]; then
    echo "== data: $CELLS Kaggle-scale cells (18,211 genes) in $OUT"
    layout=()
    [[ -d $LAYOUT ]] && layout=(--set layout="$LAYOUT")
    "$SIMULATE" --set preset=kaggle "${layout[@]}" --set cells="$CELLS" --set seed=0 --threads "$THREADS" --out "$OUT/sim"
    "$INGEST" --counts "$OUT/sim/adata_train.parquet" --obs "$OUT/sim/adata_obs_meta.csv" \
        --excluded "$OUT/sim/adata_excluded_ids.csv" --threads "$THREADS" \
        --out-counts "$COUNTS" --out-obs "$OBS" --summary "$OUT/ingest_summary.json"
    # Validation cells: every 30th cell (~3.3 %, like the pipeline's 3.2 %), taken out of training.
    "$TORCH_PYTHON" -c "import pyarrow.parquet as pq, sys; ids = pq.read_table(sys.argv[1], columns=['obs_id']).column(0).to_pylist(); open(sys.argv[2], 'w').write(''.join(i + '\n' for i in ids[::30]))" "$OBS" "$VAL"
fi
cat "$COUNTS" "$OBS" > /dev/null   # page cache

building() { pgrep -x cargo > /dev/null || pgrep -x rustc > /dev/null; }
# Before each timed run, wait (up to QUIET_WAIT s, QUIET_TOTAL s over all runs) until the machine has been idle (< 10 % of its
# CPUs busy, no cargo/rustc) for 20 s. /proc/stat and the load average are saved around each run,
# so report.py can tell how many CPUs other processes kept busy meanwhile.
busy() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }
waited_total=0
quiet() {
    local waited=0 calm=0 b0 t0 b1 t1
    while (( calm < 20 && waited < QUIET_WAIT && waited_total < QUIET_TOTAL )); do
        read -r b0 t0 < <(busy); sleep 2; read -r b1 t1 < <(busy)
        if (( (b1 - b0) * 10 < (t1 - t0) )) && ! building; then calm=$((calm + 2)); else calm=0; fi
        waited=$((waited + 2)); waited_total=$((waited_total + 2))
    done
    if (( calm >= 20 )); then echo "   idle after ${waited} s (load $(cut -d' ' -f1-3 /proc/loadavg))"
    else echo "warning: machine still busy after $waited s (${waited_total} s in all); timing anyway (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2; fi
}
timed() { # dir command...
    local d=$1; shift
    rm -rf "$d"; mkdir -p "$d"
    quiet
    cut -d' ' -f1-3 /proc/loadavg > "$d/load_before"
    grep '^cpu ' /proc/stat > "$d/stat_before"
    local rc=0
    "$TIME" -v -o "$d/time.txt" "$@" > "$d/result.json" 2> "$d/stderr.txt" || rc=$?
    grep '^cpu ' /proc/stat > "$d/stat_after"
    cut -d' ' -f1-3 /proc/loadavg > "$d/load_after"
    if (( rc != 0 )); then echo "error: $(basename "$1") failed, see $d/stderr.txt" >&2; return $rc; fi
    echo "   $(cut -c1-160 "$d/result.json")"
}
# A private copy of pgen-train, so that a rebuild during the benchmark cannot mix two binaries.
cp -p "$TRAIN" "$OUT/pgen-train"
# torch_dgd.py is the scDGD reference (r = exp θ + 1, the mixture's priors once per epoch): set
# pgen-train to the same model (its defaults are now the write-up's exp θ and per-cell priors).
# precision: f32 explicitly (the default, auto, takes bf16 on CPUs with AMX/AVX512-BF16).
# The decoder is the write-up's (one-hot cell type, plate and well into the MLP, no additive
# effect table), which is what torch_dgd.py implements; the shipped effects are timed apart
# (rust-bf16-effects).
RUST=("$OUT/pgen-train" --model dgd --bench-steps "$STEPS" --set "common.batch_size=$BATCH" --threads "$THREADS"
      --set dgd.dispersion=exp_plus_one --set dgd.mixture_prior_weight=per_epoch
      --set "common.covariates=[cell_type, plate_name, well]" --set "common.effects=[]"
    --counts "$COUNTS" --obs "$OBS" --validation "$VAL" --out-dir "$OUT/rust-train" --set precision=f32)
RUST_BF16=("${RUST[@]}" --set precision=bf16)
if [[ $BF16 == auto ]]; then
    BF16=0
    if grep -qwE 'amx_bf16|avx512_bf16' /proc/cpuinfo && { ldconfig -p || /sbin/ldconfig -p; } 2> /dev/null | grep -q 'libdnnl\.so\.2 '; then BF16=1; fi
fi
TORCH=("$TORCH_PYTHON" "$HERE/torch_dgd.py" --bench-steps "$STEPS" --batch-size "$BATCH" --threads "$THREADS"
    --counts "$COUNTS" --obs "$OBS" --validation "$VAL")

echo "== the PyTorch NB likelihood against scipy.stats.nbinom"
"$TORCH_PYTHON" "$HERE/check_nb.py" | tee "$OUT/check_nb.json" || { echo "error: torch_dgd.nb_nll disagrees with scipy" >&2; exit 1; }

# pgen-train tells glibc's malloc to keep freed blocks (model::keep_freed_memory); PyTorch gets the
# same settings through glibc's environment variables, so that the allocator is not the difference.
MALLOC=(env MALLOC_ARENA_MAX=1 MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2147483647)
rm -rf "$OUT/runs"
for i in $(seq 1 "$REPS"); do
    echo "== repetition $i of $REPS: pgen-train (candle)"
    timed "$OUT/runs/rust/run$i" "${RUST[@]}"
    if [[ $BF16 == 1 ]]; then
        echo "== repetition $i of $REPS: pgen-train (candle), precision: bf16"
        timed "$OUT/runs/rust-bf16/run$i" "${RUST_BF16[@]}"
        echo "== repetition $i of $REPS: pgen-train (candle), precision: bf16, the shipped decoder (covariates cell type and plate, additive compound effects)"
        timed "$OUT/runs/rust-bf16-effects/run$i" "${RUST_BF16[@]}" --set "common.covariates=[cell_type, plate_name]" --set "common.effects=[sm_name]"
        echo "== repetition $i of $REPS: PyTorch, decoder under bf16 autocast"
        timed "$OUT/runs/torch-autocast/run$i" "${TORCH[@]}" --autocast
        echo "== repetition $i of $REPS: PyTorch, bf16 autocast, pgen-train's malloc settings"
        timed "$OUT/runs/torch-autocast-malloc/run$i" "${MALLOC[@]}" "${TORCH[@]}" --autocast
        echo "== repetition $i of $REPS: PyTorch, torch.compile (loss, mixture) + bf16 autocast + malloc settings"
        timed "$OUT/runs/torch-compile-autocast-malloc/run$i" "${MALLOC[@]}" "${TORCH[@]}" --autocast --compile loss
        if [[ $COMPILE_FORWARD == 1 ]]; then
            echo "== repetition $i of $REPS: PyTorch, torch.compile (whole forward) + bf16 autocast + malloc settings"
            timed "$OUT/runs/torch-compile-forward-autocast-malloc/run$i" "${MALLOC[@]}" "${TORCH[@]}" --autocast --compile forward
        fi
    fi
    echo "== repetition $i of $REPS: PyTorch"
    timed "$OUT/runs/torch/run$i" "${TORCH[@]}"
    echo "== repetition $i of $REPS: PyTorch with pgen-train's malloc settings"
    timed "$OUT/runs/torch-malloc/run$i" "${MALLOC[@]}" "${TORCH[@]}"
    echo "== repetition $i of $REPS: PyTorch, torch.compile (loss, mixture) + malloc settings"
    timed "$OUT/runs/torch-compile-malloc/run$i" "${MALLOC[@]}" "${TORCH[@]}" --compile loss
    if [[ $COMPILE_FORWARD == 1 ]]; then
        echo "== repetition $i of $REPS: PyTorch, torch.compile (whole forward) + malloc settings"
        timed "$OUT/runs/torch-compile-forward-malloc/run$i" "${MALLOC[@]}" "${TORCH[@]}" --compile forward
    fi
done
if [[ $VARIANTS == 1 ]]; then
    echo "== PyTorch, trivial loss (mean logit²)"
    timed "$OUT/runs/torch-trivial/run1" "${TORCH[@]}" --loss trivial
    echo "== PyTorch, fused Adam"
    timed "$OUT/runs/torch-fused/run1" "${TORCH[@]}" --fused-adam
fi

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
mem=$(awk '/MemTotal/ {printf "%.1f", $2 / 1048576}' /proc/meminfo)
candle=$(grep -A1 '^name = "candle-core"' Cargo.lock | sed -n 's/^version = "\(.*\)"/\1/p' | head -1)
flags=$(grep -m1 -owE 'amx_bf16|amx_tile|avx512_bf16|avx512f' /proc/cpuinfo | sort -u | tr '\n' ' ' | sed 's/ $//')
machine="$(nproc) cores (${cpu:-unknown CPU}; bf16/AMX flags: ${flags:-none}), ${mem} GiB RAM, $(uname -sr)"
rustv="$("$OUT/pgen-train" --version), candle ${candle:-?} (sha256 $(sha256sum "$OUT/pgen-train" | cut -c1-12), built $(date -u -r "$OUT/pgen-train" '+%F %H:%M UTC'))"
echo "== the big layer's products alone (the roofline of the step's GEMMs)"
GEMM=()
if cargo build --release -q -p perturbgen-models --example matmul_bench 2> "$OUT/matmul_bench.err"; then
    quiet
    target/release/examples/matmul_bench "$THREADS" 3 | tee "$OUT/matmul_bench.txt"
    GEMM=(--gemm-bench "$OUT/matmul_bench.txt")
fi
echo "== results"
"$TORCH_PYTHON" "$HERE/report.py" "$OUT/runs" --out "${RESULTS:-bench/out/dgd_results.md}" --machine "$machine" --rust-version "$rustv" "${GEMM[@]}"
