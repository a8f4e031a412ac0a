#!/usr/bin/env bash
# The whole DAG at full Kaggle scale (issue 14): config/kaggle-sim.yaml (the simulator's kaggle
# preset on the real layout in ../shared/kaggle-layout) with training cut to EPOCHS full epochs
# (default 3), then the per-stage table from Snakemake's benchmark files:
#
#     bash bench/kaggle/run.sh [WORK_DIR]      (default bench/out/kaggle-dag; EPOCHS=3, CORES=2,
#                                               N_RUNS= generation runs, default the config's 3;
#                                               the README's table: N_RUNS=1)
#
# The workflow runs in WORK_DIR (--directory) with the executables of target/release, so the
# repository's own results/ stay as they are. Snakemake resumes: rerun the same command after an
# interruption (training resumes from its last epoch's checkpoint). Writes WORK_DIR/stages.md.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
REPO=$PWD
W=${1:-bench/out/kaggle-dag}
EPOCHS=${EPOCHS:-3}
CORES=${CORES:-2}
RUNS=(); [[ -n ${N_RUNS:-} ]] && RUNS=(generate="{n_runs: $N_RUNS}")
SNAKEMAKE=${SNAKEMAKE:-$REPO/.venv/bin/snakemake}
LAYOUT=${LAYOUT:-$REPO/../shared/kaggle-layout}
[[ -x $SNAKEMAKE ]] || { echo "$SNAKEMAKE missing: bash scripts/setup" >&2; exit 2; }
[[ -d $LAYOUT ]] || { echo "$LAYOUT is missing (the real Kaggle layout files)" >&2; exit 2; }
mkdir -p "$W"
"$SNAKEMAKE" -c"$CORES" --keep-going --snakefile "$REPO/workflow/Snakefile" --directory "$W" \
    --configfile "$REPO/config/config.yaml" "$REPO/config/kaggle-sim.yaml" \
    --config bin_dir="$REPO/target/release" simulate="{preset: kaggle, layout: $LAYOUT}" \
    train="{common: {max_epochs: $EPOCHS, min_epochs: $EPOCHS, checkpoint_every: 1}}" "${RUNS[@]}" > "$W/run.log" 2>&1 \
    || { tail -20 "$W/run.log"; exit 1; }
"$REPO/.venv/bin/python" "$REPO/bench/kaggle/report.py" "$W" --extrapolate-epochs 135 | tee "$W/stages.md"
