#!/usr/bin/env bash
# A generative model trained to early stop at full Kaggle-sim scale (issue 26): the workflow's own
# train job on config/kaggle-sim.yaml with its shipped settings (max 250 epochs, at least 100,
# patience 30, a checkpoint every epoch), in resumable pieces — run it again (after a kill, a
# time limit, a new session) and training continues from the last finished epoch:
#
#     bash bench/kaggle/early_stop.sh [WORK_DIR]   (default bench/out/kaggle-epochs; MODEL=dgd|nbvae,
#                                                   CORES=2, STOP_AT= a wall-clock time `date -d`
#                                                   understands, e.g. 21:50, to stop the piece then)
#
# Each piece's log is kept as WORK_DIR/early-stop/<model>-<start time>.log (the job's own log is
# rewritten by every piece); WORK_DIR/early-stop/<model>.md is the table so far
# (bench/kaggle/early_stop.py, from the model's history.csv, which carries over resumes).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
REPO=$PWD
W=${1:-bench/out/kaggle-epochs}
MODEL=${MODEL:-dgd}
CORES=${CORES:-2}
SNAKEMAKE=${SNAKEMAKE:-$REPO/.venv/bin/snakemake}
LAYOUT=${LAYOUT:-$REPO/../shared/kaggle-layout}
[[ -x $SNAKEMAKE ]] || { echo "$SNAKEMAKE missing: bash scripts/setup" >&2; exit 2; }
[[ -d $LAYOUT ]] || { echo "$LAYOUT is missing (the real Kaggle layout files)" >&2; exit 2; }
mkdir -p "$W/early-stop"
piece="$W/early-stop/$MODEL-$(date -u +%Y%m%dT%H%M%S).log"
limit=()
if [[ -n ${STOP_AT:-} ]]; then
    seconds=$(( $(date -d "$STOP_AT" +%s) - $(date +%s) ))
    (( seconds > 0 )) || { echo "STOP_AT=$STOP_AT is not in the future" >&2; exit 2; }
    # SIGTERM: Snakemake stops the job; the last finished epoch's checkpoint stays for the next piece.
    limit=(timeout --signal=TERM "$seconds")
fi
status=0
# shellcheck disable=SC2086
"${limit[@]}" "$SNAKEMAKE" "results/models/$MODEL/model.json" -c"$CORES" ${SNAKEMAKE_ARGS:-} --snakefile "$REPO/workflow/Snakefile" \
    --directory "$W" --configfile "$REPO/config/config.yaml" "$REPO/config/kaggle-sim.yaml" \
    --config bin_dir="$REPO/target/release" simulate="{preset: kaggle, layout: $LAYOUT}" > "$W/early-stop/snakemake-$MODEL.log" 2>&1 || status=$?
cp "$W/logs/train/$MODEL.log" "$piece" 2> /dev/null || true
"$REPO/.venv/bin/python" "$REPO/bench/kaggle/early_stop.py" "$W" "$MODEL" | tee "$W/early-stop/$MODEL.md"
case $status in
    0) echo "trained to the end: $W/results/models/$MODEL/model.json" ;;
    124) echo "piece stopped at $STOP_AT; run again to continue" ;;
    *) tail -20 "$W/early-stop/snakemake-$MODEL.log"; exit "$status" ;;
esac
