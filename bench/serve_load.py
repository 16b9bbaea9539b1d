"""A bounded load test of `alignpipe serve` on 127.0.0.1: text -> images searches at a fixed
concurrency until a fixed number of requests or a fixed duration, whichever comes first; prints
p50 / p99 latency, queries/s and errors (by HTTP status or exception) as JSON.

Against a running server:

    python bench/serve_load.py --url http://127.0.0.1:8080 --requests 2000 --concurrency 8 --duration 60

or starting one (`alignpipe serve` as a process) on a model folder and an index, or on a
synthetic index of N random unit vectors of the model's dimension (the server's cost per query
is the text tower plus one [N, D] matrix product, whatever the vectors hold):

    python bench/serve_load.py --model runs/tiny/model --synthetic-index 100000
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORDS = "red green blue yellow small large circle square triangle star ring diamond left right top".split()


def query_texts(count: int, seed: int) -> list[str]:
    """Varied short captions, so that no cache of any layer answers twice."""
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(2, 8))) + f" {i}" for i in range(count)]


def synthetic_index(path: str, model: str, size: int, seed: int) -> None:
    """Writes a CorpusIndex of `size` random unit vectors of `model`'s dimension to `path`."""
    from alignpipe.search.corpus_index import CorpusIndex, Item
    from alignpipe.serving.embedder import QueryEmbedder

    dim = QueryEmbedder.load(model).dim
    rng = np.random.default_rng(seed)

    def unit(rows: int) -> np.ndarray:
        vectors = rng.standard_normal((rows, dim), dtype=np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    items = [
        Item(f"http://127.0.0.1/i/{i}.jpg", f"http://127.0.0.1/p/{i}", (f"item {i}",), "")
        for i in range(size)
    ]
    CorpusIndex(unit(size), unit(size), np.arange(size, dtype=np.int64), items, model).save(path)


def start_server(model: str, index: str) -> tuple[subprocess.Popen, str]:
    """`alignpipe serve` on a free 127.0.0.1 port, once its health route answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "pipelines.cli", "serve", "--model", model, "--index", index]
    proc = subprocess.Popen(
        [*command, "--port", str(port)], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"alignpipe serve did not start (exit status {proc.poll()})")


def run_load(url: str, texts: list[str], concurrency: int, duration_s: float, k: int) -> dict:
    """Sends `texts` as text -> images searches from `concurrency` threads, each on its own
    keep-alive connection, until they are all sent or `duration_s` has passed."""
    parsed = urllib.parse.urlsplit(url)
    assert parsed.hostname in ("127.0.0.1", "localhost"), "the load test runs against 127.0.0.1 only"
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    lock = threading.Lock()
    next_query = iter(texts)
    start = time.perf_counter()
    deadline = start + duration_s

    def worker() -> None:
        connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
        while time.perf_counter() < deadline:
            with lock:
                text = next(next_query, None)
            if text is None:
                break
            body = json.dumps({"text": text, "k": k})
            sent = time.perf_counter()
            try:
                connection.request(
                    "POST", "/search/text-to-images", body, {"Content-Type": "application/json"}
                )
                response = connection.getresponse()
                response.read()
                outcome = None if response.status == 200 else f"HTTP {response.status}"
            except (OSError, http.client.HTTPException) as e:
                outcome = type(e).__name__
                connection.close()
                connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
            with lock:
                if outcome:
                    errors[outcome] += 1
                else:
                    latencies.append(time.perf_counter() - sent)
        connection.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    ms = np.array(latencies) * 1000
    return {
        "requests": len(latencies) + sum(errors.values()),
        "ok": len(latencies),
        "errors": dict(errors),
        "seconds": round(elapsed, 2),
        "queries_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 1) if len(ms) else None,
        "p99_ms": round(float(np.percentile(ms, 99)), 1) if len(ms) else None,
        "concurrency": concurrency,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="a running server (else --model and --index or --synthetic-index)")
    parser.add_argument("--model", help="model folder to serve")
    parser.add_argument("--index", help="corpus index folder to serve")
    parser.add_argument("--synthetic-index", type=int, metavar="N", help="serve N random vectors instead")
    parser.add_argument("--requests", type=int, default=2000, help="at most this many requests")
    parser.add_argument("--duration", type=float, default=60.0, help="at most this many seconds")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    parser.add_argument("--warmup", type=int, default=20, help="requests sent first, not counted")
    parser.add_argument("--k", type=int, default=10, help="results per query")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    proc = None
    with tempfile.TemporaryDirectory() as tmp:
        url = args.url
        if not url:
            if not args.model or not (args.index or args.synthetic_index):
                parser.error("give --url, or --model with --index or --synthetic-index")
            index = args.index
            if args.synthetic_index:
                index = os.path.join(tmp, "index")
                synthetic_index(index, args.model, args.synthetic_index, args.seed)
            proc, url = start_server(args.model, index)
        try:
            texts = query_texts(args.warmup + args.requests, args.seed)
            run_load(
                url, texts[: args.warmup], min(args.concurrency, max(args.warmup, 1)), args.duration, args.k
            )
            result = run_load(url, texts[args.warmup :], args.concurrency, args.duration, args.k)
        finally:
            if proc:
                proc.terminate()
                proc.wait(timeout=60)
    result |= {"index": args.index or f"synthetic {args.synthetic_index}", "cpus": os.cpu_count()}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
