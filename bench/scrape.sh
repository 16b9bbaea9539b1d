#!/usr/bin/env bash
# The scrape benchmark: alignpipe vs img2dataset 1.47 and a bare crawler, in one run (see
# bench/scrape_vs_peers.py for what each round runs and docs/benchmarks.md for the figures).
#   bench/scrape.sh WEB [OUT]        WEB = make_web_corpus.py output, e.g. /tmp/webcorpus
# Env: REPEAT (3), PORT (8000), BENCH_CACHE (/tmp/peerbench: peers' venvs, nginx, results),
#   SHARED_BENCH (../shared/bench: the peer runners), ALIGNPIPE_SRC (measure another source tree,
#   e.g. `git archive COMMIT | tar -x -C DIR`, with this checkout's venv; default: this checkout).
# Makes the peers' venvs as the shared scripts do; then, in a network namespace of its own where
# only loopback exists, serves WEB/www with nginx on 127.0.0.1:PORT and runs the rounds.
# Results: OUT (default $BENCH_CACHE/scrape-DATE): summary.txt, results.json, runs.jsonl, logs.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WEB=$(readlink -f "${1:?WEB folder (make_web_corpus.py output)}")
SHARED=$(readlink -f "${SHARED_BENCH:-$ROOT/../shared/bench}")
export BENCH_CACHE=${BENCH_CACHE:-/tmp/peerbench} SHARED_BENCH=$SHARED
PORT=${PORT:-8000}
OUT=$(realpath -m "${2:-$BENCH_CACHE/scrape-$(date +%Y%m%d-%H%M%S)}")
[ -f "$WEB/truth/img_alt.jsonl" ] || { echo "no $WEB/truth/img_alt.jsonl: build it with make_web_corpus.py" >&2; exit 1; }
[ -f "$SHARED/img2dataset_loopback.py" ] || { echo "peer runners not found in $SHARED (set SHARED_BENCH)" >&2; exit 1; }

[ -x "$ROOT/.venv/bin/alignpipe" ] || make -C "$ROOT" install
[ -x /usr/bin/time ] || apt-get install -y -q time
# the same venvs and pins as img2dataset_loopback.sh and run_all.sh, so they are shared with them
if [ ! -x "$BENCH_CACHE/venv-img2dataset/bin/img2dataset" ]; then
  python3 -m venv "$BENCH_CACHE/venv-img2dataset"
  "$BENCH_CACHE/venv-img2dataset/bin/pip" install -q img2dataset==1.47.0 tensorflow tensorflow-io
fi
if [ ! -x "$BENCH_CACHE/venv-bench/bin/python" ]; then
  python3 -m venv "$BENCH_CACHE/venv-bench"
  "$BENCH_CACHE/venv-bench/bin/pip" install -q beautifulsoup4 lxml selectolax resiliparse aiohttp httpx numpy threadpoolctl
fi

# nginx, as serve_www.sh gets it (apt-get download into $BENCH_CACHE), fetched now: there is
# no network inside the namespace below
if ! command -v nginx >/dev/null && [ ! -x "$BENCH_CACHE/nginx-root/usr/sbin/nginx" ]; then
  p=$((20000 + RANDOM % 10000)); "$SHARED/serve_www.sh" start "$WEB/www" $p nginx && "$SHARED/serve_www.sh" stop $p
fi
# Measure inside a network namespace of our own with only loopback in it: the mini-web links to
# outside hosts, and whatever a tool tries with them must not leave this machine.
if [ -z "${SCRAPE_BENCH_NETNS:-}" ] && command -v ip >/dev/null && unshare -n true 2>/dev/null; then
  exec env SCRAPE_BENCH_NETNS=1 unshare -n sh -c 'ip link set lo up && exec "$0" "$@"' "$0" "$WEB" "$OUT"
fi
[ -n "${SCRAPE_BENCH_NETNS:-}" ] || echo "warning: no private network namespace (needs unshare -n and ip)" >&2

# The server's pid file and logs go to $OUT/server, not $BENCH_CACHE, where a server outside
# this namespace may have the same port.
mkdir -p "$OUT/server"
ln -sfn "$BENCH_CACHE/nginx-root" "$OUT/server/nginx-root"
serve() { BENCH_CACHE=$OUT/server "$SHARED/serve_www.sh" "$@"; }
serve start "$WEB/www" "$PORT" nginx
trap 'serve stop "$PORT"' EXIT
BENCH_CACHE=$OUT/server "$ROOT/.venv/bin/python" "$ROOT/bench/scrape_vs_peers.py" "$WEB" --port "$PORT" \
  --out "$OUT" --cache "$BENCH_CACHE" --repeat "${REPEAT:-3}" 2>&1 | tee "$OUT/summary.txt"
