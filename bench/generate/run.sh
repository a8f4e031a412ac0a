#!/usr/bin/env bash
# The generation route at Kaggle scale (issue 13): the simulator's `kaggle` preset with the real
# layout (../shared/kaggle-layout), a DGD trained for EPOCHS epochs (default 1: the timing of the
# route does not depend on how well the model is trained; its MRRMSE does), then size forests,
# one generation run (NB means) and limma for the 255 targets, each step timed with its peak RSS
# (GNU time). Steps whose outputs exist are skipped, so an interrupted run resumes.
#   bash bench/generate/run.sh [WORK_DIR]     (default /tmp/pgen-bench-generate)
#   UNTIL=<step> stops after that step; EPOCHS, THREADS, LAYOUT, BIN override the defaults.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
BIN=${BIN:-target/release}
W=${1:-/tmp/pgen-bench-generate}
LAYOUT=${LAYOUT:-../shared/kaggle-layout}
EPOCHS=${EPOCHS:-1}
THREADS=${THREADS:-2}
mkdir -p "$W"
TIMES="$W/times.tsv"
[ -f "$TIMES" ] || printf 'step\tseconds\tpeak_rss_mb\n' > "$TIMES"

step() {  # step NAME OUTPUT -- command...
  local name=$1 out=$2; shift 3
  if [ -e "$out" ]; then echo "== $name: done ($out)"; return; fi
  echo "== $name"
  /usr/bin/time -f "%e %M" -o "$W/.time" "$@" > "$W/$name.log" 2>&1 || { tail -5 "$W/$name.log"; exit 1; }
  read -r secs kb < "$W/.time"
  printf '%s\t%s\t%d\n' "$name" "$secs" $((kb / 1024)) >> "$TIMES"
  echo "   $secs s, $((kb / 1024)) MB"
  if [ "${UNTIL:-}" = "$name" ]; then echo "stopping after $name (UNTIL)"; exit 0; fi
}

step simulate "$W/sim/simulation.json" -- "$BIN/pgen-simulate" --set preset=kaggle --set layout="$LAYOUT" --set seed=0 --threads "$THREADS" --out "$W/sim"
step ingest "$W/ingest/summary.json" -- "$BIN/pgen-ingest" --counts "$W/sim/adata_train.parquet" --obs "$W/sim/adata_obs_meta.csv" \
  --excluded "$W/sim/adata_excluded_ids.csv" --genes "$W/sim/genes.txt" --threads "$THREADS" \
  --out-counts "$W/ingest/counts.parquet" --out-obs "$W/ingest/obs.parquet" --summary "$W/ingest/summary.json" --qc-plot "$W/ingest/qc.png"
step ingest_truth "$W/truth/obs.parquet" -- "$BIN/pgen-ingest" --counts "$W/sim/truth/adata_test.parquet" --obs "$W/sim/truth/adata_test_obs_meta.csv" \
  --genes "$W/sim/genes.txt" --threads "$THREADS" --out-counts "$W/truth/counts.parquet" --out-obs "$W/truth/obs.parquet"
step split "$W/split/targets.csv" -- "$BIN/pgen-split" --counts "$W/ingest/counts.parquet" --obs "$W/ingest/obs.parquet" \
  --id-map "$W/sim/id_map.csv" --set validation_fraction=0.032 --set keep_target_relevant=true --threads "$THREADS" \
  --out-train-counts "$W/split/train_counts.parquet" --out-train-obs "$W/split/train_obs.parquet" \
  --out-holdout-counts "$W/split/holdout_counts.parquet" --out-holdout-obs "$W/split/holdout_obs.parquet" \
  --out-targets "$W/split/targets.csv" --out-validation "$W/split/validation_ids.txt"
step filter "$W/filter/obs.parquet" -- "$BIN/pgen-filter" --counts "$W/split/train_counts.parquet" --obs "$W/split/train_obs.parquet" \
  --set "drop_compounds=[Dabrafenib, Belinostat]" --ids "$W/split/validation_ids.txt" --out-ids "$W/filter/validation_ids.txt" \
  --threads "$THREADS" --out-counts "$W/filter/counts.parquet" --out-obs "$W/filter/obs.parquet" --removed "$W/filter/removed.csv"
step pseudobulk "$W/pseudobulk/train.parquet" -- "$BIN/pgen-pseudobulk" --counts "$W/split/train_counts.parquet" --obs "$W/split/train_obs.parquet" \
  --threads "$THREADS" --out "$W/pseudobulk/train.parquet"
step pseudobulk_truth "$W/pseudobulk/truth.parquet" -- "$BIN/pgen-pseudobulk" --counts "$W/split/train_counts.parquet" --obs "$W/split/train_obs.parquet" \
  --counts "$W/truth/counts.parquet" --obs "$W/truth/obs.parquet" --threads "$THREADS" --out "$W/pseudobulk/truth.parquet"
for ct in "B cells" "Myeloid cells"; do
  s=${ct// /_}
  step "limma_truth_$s" "$W/de/truth_$s.parquet" -- "$BIN/pgen-limma" --pseudobulk "$W/pseudobulk/truth.parquet" --cell-type "$ct" \
    --targets "$W/split/targets.csv" --script scripts/limma_de.R --threads 1 --out "$W/de/truth_$s.parquet"
done
step merge_truth "$W/de/truth.parquet" -- "$BIN/pgen-merge-de" "$W/de/truth_B_cells.parquet" "$W/de/truth_Myeloid_cells.parquet" --out "$W/de/truth.parquet"
step train "$W/models/dgd/model.json" -- "$BIN/pgen-train" --model dgd --counts "$W/filter/counts.parquet" --obs "$W/filter/obs.parquet" \
  --validation "$W/filter/validation_ids.txt" --out-dir "$W/models/dgd" --config config/config.yaml \
  --set common.max_epochs="$EPOCHS" --set common.min_epochs=1 --threads "$THREADS"
step sizes "$W/generate/sizes.csv" -- "$BIN/pgen-sizes" --counts "$W/split/train_counts.parquet" --obs "$W/split/train_obs.parquet" \
  --targets "$W/split/targets.csv" --exclude-compound "Dimethyl Sulfoxide" --exclude-compound Dabrafenib --exclude-compound Belinostat \
  --threads "$THREADS" --out "$W/generate/sizes.csv" --plot "$W/generate/sizes.png"
step generate "$W/generate/dgd_run0.parquet" -- "$BIN/pgen-generate" --model "$W/models/dgd" --sizes "$W/generate/sizes.csv" \
  --pseudobulk "$W/pseudobulk/train.parquet" --targets "$W/split/targets.csv" --script scripts/limma_de.R --threads "$THREADS" \
  --out "$W/generate/dgd_run0.parquet" --out-pseudobulk "$W/generate/dgd_run0_pseudobulk.parquet"
step baseline_zero "$W/generate/zero.parquet" -- "$BIN/pgen-baseline" --kind zero --targets "$W/split/targets.csv" \
  --de-train "$W/de/truth.parquet" --out "$W/generate/zero.parquet"
for route in dgd_run0 zero; do
  "$BIN/pgen-score" --prediction "$W/generate/$route.parquet" --truth "$W/de/truth.parquet" | sed "s/^/$route: /"
done
echo "groups: $(($(wc -l < "$W/generate/sizes.csv") - 1)), generated cells: $(awk -F, 'NR > 1 {s += $9} END {print s}' "$W/generate/sizes.csv")"
lscpu | grep -E "Model name|^CPU\(s\)"
column -t "$TIMES"
