#!/usr/bin/env bash
# The recipe benchmark: the tiny preset against a plain reference at equal training time, on
# real captioned photos (../shared/datasets/make_stamps_eval.py's test split, never trained on)
# and on the demo (bench/recipe.py says what each model is; docs/results.md has the figures).
#   bench/recipe.sh STAMPS_DIR [OUT]      STAMPS_DIR: the output folder of make_stamps_eval.py
# Env: BUDGET (170: training seconds per run), SEEDS ("0 1 2"), SETS ("stamps demo"),
#      MODELS ("reference ours").
# Each (set, model) is calibrated once, on the first seed: its step rate sets the steps of every
# seed, so that each run's schedule ends at BUDGET seconds. Results: OUT/results.jsonl (one line a
# run), OUT/summary.md (medians over seeds), OUT/recipe.png.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
STAMPS=$(realpath "${1:?usage: bench/recipe.sh STAMPS_DIR [OUT]}")
OUT=$(realpath -m "${2:-/tmp/recipebench-$(date +%Y%m%d-%H%M%S)}")
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PY" ] || make -C "$ROOT" install
mkdir -p "$OUT"
[ -f "$OUT/data/stamps/eval.json" ] && [ -f "$OUT/data/demo/eval.json" ] ||
  "$PY" "$ROOT/bench/recipe_data.py" "$STAMPS" "$OUT/data" 2>&1 | tail -n 3
for set in ${SETS:-stamps demo}; do
  for model in ${MODELS:-reference ours}; do
    steps=""
    for seed in ${SEEDS:-0 1 2}; do
      if [ -z "$steps" ]; then
        how=(--budget "${BUDGET:-170}")
      else
        how=(--steps "$steps")
      fi
      echo "[recipe] $set $model seed $seed ${how[*]}" >&2
      "$PY" "$ROOT/bench/recipe.py" --data "$OUT/data/$set" --model "$model" --seed "$seed" \
        "${how[@]}" --out "$OUT/results.jsonl" > "$OUT/$set-$model-$seed.log" 2>&1
      steps=$(tail -n 1 "$OUT/results.jsonl" | "$PY" -c "import json,sys; print(json.load(sys.stdin)['steps'])")
    done
  done
done
"$PY" "$ROOT/bench/recipe_report.py" "$OUT/results.jsonl" --out "$OUT"
cat "$OUT/summary.md"
