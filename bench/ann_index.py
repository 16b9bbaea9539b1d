"""Nearest-neighbour search for the corpus index: faiss, usearch and ScaNN against exact numpy search.

On unit vectors drawn from a Gaussian mixture on the sphere (embeddings cluster by topic and vary
along few directions; uniform noise would make every neighbour equally far), for each corpus size:
- build: vectors/s of building the index (exact search: copying the matrix);
- single query: latency p50 / p99 of one query at a time;
- batched: queries/s of one call with the whole query batch;
- recall@10: the share of the exact top 10 (float32 dot products) that the method returns.

Everything runs on one thread (`OMP_NUM_THREADS` etc. default to 1; set them to compare more).

Every approximate method runs at a few search-effort settings (the build is done once per method);
the table gives each, so the cheapest setting that reaches recall@10 >= 0.95 can be read off.

ScaNN 1.4.2's package `__init__` loads TensorFlow ops built against another TensorFlow (an
undefined absl symbol under TensorFlow 2.21), so its numpy searcher (`scann_ops_pybind`, which
needs no TensorFlow) is imported without running that `__init__`. Install it beside the project:
`pip install scann==1.4.2`; usearch likewise: `pip install usearch==2.26.6`. A method whose
library is not installed gets one row saying so.

Usage: python bench/ann_index.py [--sizes 10000,30000,100000] [--dim 128] [--queries 1000]
    [--spread 1.0] [--intrinsic-dim 16] [--out results.json]
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import sys
import time
import types

# One thread per library (BLAS, faiss's OpenMP; usearch's below), set before numpy loads BLAS: on a
# shared machine extra threads measure the neighbours' load, and a server runs one query per thread.
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import numpy as np  # noqa: E402

K = 10


def gaussian_mixture(
    n: int, dim: int, clusters: int, spread: float, rng: np.random.Generator, intrinsic_dim: int = 16
) -> np.ndarray:
    """`n` unit vectors around `clusters` random unit centres, of Zipf-distributed sizes.

    Each cluster varies mostly along its own `intrinsic_dim` random directions (learned
    embeddings have a low intrinsic dimension: isotropic noise in all `dim` directions would be
    a harder, unrealistic case where no index beats a scan), plus a tenth of that as isotropic
    noise. `spread`: the noise's norm relative to the centre's.
    """
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    sizes = rng.zipf(1.5, size=clusters).astype(np.float64)  # topics are not equally common
    assignment = rng.choice(clusters, size=n, p=sizes / sizes.sum())
    bases = rng.normal(size=(clusters, intrinsic_dim, dim)).astype(np.float32) / np.sqrt(dim)
    coefficients = rng.normal(scale=spread / np.sqrt(intrinsic_dim), size=(n, intrinsic_dim)).astype(
        np.float32
    )
    points = centres[assignment] + np.einsum("ni,nid->nd", coefficients, bases[assignment])
    points += rng.normal(scale=0.1 * spread / np.sqrt(dim), size=(n, dim)).astype(np.float32)
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def exact_top_k(base: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Indices [Q, k] of the `k` largest dot products, best first (the reference)."""
    scores = queries @ base.T
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1)
    return np.take_along_axis(part, order, axis=1)


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]))


def measure(search, queries: np.ndarray, singles: int) -> dict:
    """Latency of one query at a time (p50, p99 in ms) and queries/s of one batched call."""
    search(queries[:1])  # warm up
    latencies = []
    for q in queries[:singles]:
        start = time.perf_counter()
        search(q[None])
        latencies.append(time.perf_counter() - start)
    start = time.perf_counter()
    found = search(queries)
    batched = time.perf_counter() - start
    return {
        "p50_ms": 1000 * float(np.percentile(latencies, 50)),
        "p99_ms": 1000 * float(np.percentile(latencies, 99)),
        "batched_qps": len(queries) / batched,
        "found": found,
    }


def exact_numpy(base: np.ndarray):
    index = np.ascontiguousarray(base)
    yield "exact numpy", {}, lambda q: exact_top_k(index, q, K)


def faiss_hnsw(base: np.ndarray):
    import faiss

    index = faiss.IndexHNSWFlat(base.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 80
    index.add(base)
    yield "faiss HNSW (M=32, efC=80)", {}, None
    for ef in (16, 32, 64, 128, 256):
        index.hnsw.efSearch = ef
        yield "faiss HNSW (M=32, efC=80)", {"efSearch": ef}, lambda q: index.search(q, K)[1]


def faiss_ivf(base: np.ndarray):
    import faiss

    lists = int(4 * np.sqrt(len(base)))
    quantizer = faiss.IndexFlatIP(base.shape[1])
    index = faiss.IndexIVFFlat(quantizer, base.shape[1], lists, faiss.METRIC_INNER_PRODUCT)
    index.train(base)
    index.add(base)
    name = f"faiss IVF-Flat ({lists} lists)"
    yield name, {}, None
    for probes in (8, 16, 32, 64, 128):
        index.nprobe = probes
        yield name, {"nprobe": probes}, lambda q: index.search(q, K)[1]


def usearch_hnsw(base: np.ndarray):
    from usearch.index import Index

    index = Index(ndim=base.shape[1], metric="ip", dtype="f32", connectivity=16, expansion_add=128)
    index.add(np.arange(len(base)), base, threads=1)
    yield "usearch HNSW (M=16, f32)", {}, None
    for ef in (16, 32, 64, 128, 256):
        index.expansion_search = ef
        name = "usearch HNSW (M=16, f32)"
        yield name, {"expansion": ef}, lambda q: index.search(q, K, threads=1).keys.reshape(len(q), K)


@functools.cache
def _scann_ops_pybind():
    """ScaNN's numpy searcher, without the package `__init__` that loads its TensorFlow ops."""
    spec = importlib.util.find_spec("scann")
    if spec is None:
        raise ImportError("scann is not installed (pip install scann==1.4.2)")
    root = os.path.dirname(spec.origin)
    packages = (("scann", ""), ("scann.scann_ops", "scann_ops"), ("scann.scann_ops.py", "scann_ops/py"))
    for name, folder in packages:
        package = types.ModuleType(name)
        package.__path__ = [os.path.join(root, folder)]
        sys.modules.setdefault(name, package)
    from scann.scann_ops.py import scann_ops_pybind

    return scann_ops_pybind


def scann_ah(base: np.ndarray):
    ops = _scann_ops_pybind()
    leaves = int(2 * np.sqrt(len(base)))
    searcher = (
        ops.builder(base, K, "dot_product")
        .tree(num_leaves=leaves, num_leaves_to_search=leaves // 20, training_sample_size=len(base))
        .score_ah(2, anisotropic_quantization_threshold=0.2)
        .reorder(100)
        .build()
    )
    name = f"ScaNN tree-AH ({leaves} leaves, reorder 100)"
    yield name, {}, None
    for probes in (8, 16, 32, 64, 128):
        yield name, {"leaves": probes}, lambda q, p=probes: searcher.search_batched(q, leaves_to_search=p)[0]


METHODS = {"numpy": exact_numpy, "faiss-hnsw": faiss_hnsw, "faiss-ivf": faiss_ivf}
METHODS |= {"usearch": usearch_hnsw, "scann": scann_ah}


def run_size(n: int, args) -> list[dict]:
    rng = np.random.default_rng([args.seed, n])  # each size's data alike, whatever else runs
    data = gaussian_mixture(
        n + args.queries, args.dim, max(n // 100, 10), args.spread, rng, args.intrinsic_dim
    )
    base, queries = data[:n], data[n:]
    truth = exact_top_k(base, queries, K)
    rows = []
    for method in args.methods.split(","):
        start = time.perf_counter()
        try:
            settings = METHODS[method](base)
            name, params, search = next(settings)
            build_s = time.perf_counter() - start
            if search is None:
                name, params, search = next(settings)
            while True:
                result = measure(search, queries, args.singles)
                found = result.pop("found")
                rows.append(
                    {"n": n, "method": name, **params, "build_vps": n / max(build_s, 1e-9), **result}
                    | {"recall_at_10": recall_at_k(np.asarray(found), truth)}
                )
                print(json.dumps(rows[-1]), flush=True)
                name, params, search = next(settings)
        except StopIteration:
            continue
        except ImportError as e:
            rows.append({"n": n, "method": method, "error": str(e)})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def table(rows: list[dict]) -> str:
    lines = [
        "| vectors | method | search effort | build (vectors/s) | single p50 (ms) | single p99 (ms) "
        "| batched (queries/s) | recall@10 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    keys = ("n", "method", "build_vps", "p50_ms", "p99_ms", "batched_qps", "recall_at_10", "error")
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['n']:,} | {row['method']} | {row['error']} | | | | | |")
            continue
        effort = ", ".join(f"{k}={v}" for k, v in row.items() if k not in keys) or "-"
        build = "-" if row["method"] == "exact numpy" else f"{row['build_vps']:,.0f}"
        lines.append(
            f"| {row['n']:,} | {row['method']} | {effort} | {build} | {row['p50_ms']:.3f} | "
            f"{row['p99_ms']:.3f} | {row['batched_qps']:,.0f} | {row['recall_at_10']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,30000,100000", help="corpus sizes, comma-separated")
    parser.add_argument("--dim", type=int, default=128, help="dimension (the tiny preset's embed_dim)")
    parser.add_argument("--queries", type=int, default=1000, help="queries (held out of the mixture)")
    parser.add_argument("--singles", type=int, default=300, help="queries timed one at a time")
    parser.add_argument("--spread", type=float, default=1.0, help="noise norm relative to a cluster centre")
    parser.add_argument("--intrinsic-dim", type=int, default=16, help="directions a cluster varies along")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"of {list(METHODS)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the rows as JSON here")
    args = parser.parse_args()
    rows = [row for n in map(int, args.sizes.split(",")) for row in run_size(n, args)]
    print(table(rows))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
