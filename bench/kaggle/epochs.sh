#!/usr/bin/env bash
# Per-epoch training time and peak RSS of both models at full Kaggle-sim scale (issue 26): the
# workflow's own train jobs on config/kaggle-sim.yaml (the simulator's kaggle preset on the real
# layout, precision auto) cut to EPOCHS epochs each, run one after the other so that neither
# shares the cores, then the table (bench/kaggle/epochs.py):
#
#     bash bench/kaggle/epochs.sh [WORK_DIR]   (default bench/out/kaggle-epochs; EPOCHS=3, CORES=2,
#                                               BATCH= batch size, default the config's 1024)
#
# The stages before training (simulate … filter) run first if WORK_DIR lacks them; a WORK_DIR of
# an earlier bench/kaggle/run.sh reuses them (SNAKEMAKE_ARGS="--rerun-triggers input" keeps
# Snakemake from redoing them for a newer build). Writes WORK_DIR/epochs.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
REPO=$PWD
W=${1:-bench/out/kaggle-epochs}
EPOCHS=${EPOCHS:-3}
CORES=${CORES:-2}
SNAKEMAKE=${SNAKEMAKE:-$REPO/.venv/bin/snakemake}
LAYOUT=${LAYOUT:-$REPO/../shared/kaggle-layout}
[[ -x $SNAKEMAKE ]] || { echo "$SNAKEMAKE missing: bash scripts/setup" >&2; exit 2; }
[[ -d $LAYOUT ]] || { echo "$LAYOUT is missing (the real Kaggle layout files)" >&2; exit 2; }
BATCH_SET=""; [[ -n ${BATCH:-} ]] && BATCH_SET=", batch_size: $BATCH"
mkdir -p "$W"
for model in dgd nbvae; do
    # One model at a time: its training alone on the machine (its own threads: threads.train).
    # shellcheck disable=SC2086
    "$SNAKEMAKE" "results/models/$model/model.json" -c"$CORES" --keep-going ${SNAKEMAKE_ARGS:-} --snakefile "$REPO/workflow/Snakefile" --directory "$W" \
        --configfile "$REPO/config/config.yaml" "$REPO/config/kaggle-sim.yaml" \
        --config bin_dir="$REPO/target/release" simulate="{preset: kaggle, layout: $LAYOUT}" \
        train="{common: {max_epochs: $EPOCHS, min_epochs: $EPOCHS, checkpoint_every: 1$BATCH_SET}}" >> "$W/epochs.log" 2>&1 \
        || { tail -20 "$W/epochs.log"; exit 1; }
done
"$REPO/.venv/bin/python" "$REPO/bench/kaggle/epochs.py" "$W" | tee "$W/epochs.md"
