#!/usr/bin/env bash
# The paper's ablations (ALIGN section 6 / ../docs/align.md) at small scale, with the tiny preset:
# learnable vs fixed temperature (1/64, 1/32, 1/16), embedding size, batch size (in-batch
# negatives) and label smoothing, each the median of SEEDS runs of STEPS steps.
#   bench/ablations.sh DATA_DIR [OUT]   DATA_DIR: a set folder of bench/recipe_data.py (e.g. .../demo)
# Env: STEPS (300), SEEDS ("0 1 2"), ONLY (run only the configurations whose label matches).
# Results: OUT/results.jsonl, OUT/summary.md (medians), OUT/recipe.png (every seed).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA=$(realpath "${1:?usage: bench/ablations.sh DATA_DIR [OUT]}")
OUT=$(realpath -m "${2:-/tmp/ablations-$(date +%Y%m%d-%H%M%S)}")
PY="${PYTHON:-$ROOT/.venv/bin/python}"
mkdir -p "$OUT"
declare -A CONFIGS=(
  ["baseline (learnable T, 128-d, batch 128, LS 0.1)"]=""
  ["fixed T 1/64"]="train.temperature_init=0.015625 train.temperature_lr_multiplier=0"
  ["fixed T 1/32"]="train.temperature_init=0.03125 train.temperature_lr_multiplier=0"
  ["fixed T 1/16"]="train.temperature_init=0.0625 train.temperature_lr_multiplier=0"
  ["embedding 64"]="model.embed_dim=64"
  ["embedding 256"]="model.embed_dim=256"
  ["batch 64"]="train.batch_size=64"
  ["batch 256"]="train.batch_size=256"
  ["no label smoothing"]="train.label_smoothing=0"
)
for label in "${!CONFIGS[@]}"; do
  [[ -z "${ONLY:-}" || "$label" == *"$ONLY"* ]] || continue
  sets=()
  for setting in ${CONFIGS[$label]}; do sets+=(--set "$setting"); done
  for seed in ${SEEDS:-0 1 2}; do
    echo "[ablations] $label seed $seed" >&2
    "$PY" "$ROOT/bench/recipe.py" --data "$DATA" --model ours --seed "$seed" --steps "${STEPS:-300}" \
      --label "$label" "${sets[@]}" --out "$OUT/results.jsonl" > "$OUT/run.log" 2>&1
  done
done
"$PY" "$ROOT/bench/recipe_report.py" "$OUT/results.jsonl" --out "$OUT"
cat "$OUT/summary.md"
