#!/usr/bin/env bash
# The filter benchmark: the Beam metadata filter (run_filter_metadata) vs its in-memory pandas peer on
# one synthetic skewed corpus, normal and hot-key variants (see bench/filter_vs_pandas.py for what
# runs and docs/benchmarks.md for the figures).
#   bench/filter.sh [PAIRS] [OUT]     PAIRS default 1000000; OUT default /tmp/filterbench-DATE
# Env: SEED (0), VARIANTS (normal,hot), QUIET_TIMEOUT (300: at most this long to wait for a quiet
#   machine before each variant). Runs in a network namespace with only loopback where it can.
# Results: OUT/summary.txt, OUT/results.json, OUT/log.txt and each run's time -v and log.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PAIRS=${1:-1000000}
OUT=$(realpath -m "${2:-/tmp/filterbench-$(date +%Y%m%d-%H%M%S)}")

[ -x "$ROOT/.venv/bin/python" ] || make -C "$ROOT" install
[ -x /usr/bin/time ] || apt-get install -y -q time
# Nothing here needs a network: measure inside a namespace of our own where only loopback exists.
if [ -z "${FILTER_BENCH_NETNS:-}" ] && command -v ip >/dev/null && unshare -n true 2>/dev/null; then
  exec env FILTER_BENCH_NETNS=1 unshare -n sh -c 'ip link set lo up && exec "$0" "$@"' "$0" "$PAIRS" "$OUT"
fi
mkdir -p "$OUT"
"$ROOT/.venv/bin/python" "$ROOT/bench/filter_vs_pandas.py" --pairs "$PAIRS" --seed "${SEED:-0}" \
  --variants "${VARIANTS:-normal,hot}" --out "$OUT" 2>&1 | tee "$OUT/log.txt"
