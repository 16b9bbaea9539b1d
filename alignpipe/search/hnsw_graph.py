"""An approximate nearest-neighbour graph over unit vectors: faiss's HNSW, by inner product.

Chosen by measurement (`bench/ann_index.py`, docs/benchmarks.md): at 100,000 clustered vectors of
128 dimensions, with these settings, recall@10 0.98 against exact search at 1/100 of its latency,
one thread. (ScaNN was as good and faster to build, but its package cannot be imported beside
TensorFlow 2.21; usearch built 2.6x slower.)
"""

from __future__ import annotations

import faiss
import numpy as np

NEIGHBOURS = 32  # HNSW's M: links per node
BUILD_EFFORT = 80  # efConstruction
SEARCH_EFFORT = 64  # efSearch, at least k: recall@10 0.98 at 100k (32 gave 0.96)


class HnswGraph:
    """HNSW graph of float32 `[N, D]` unit vectors; `search` ranks by dot product.

    Example:
        graph = HnswGraph.build(vectors)
        rows, scores = graph.search(queries, k=10)   # [Q, k] each, best first; row -1: none
        HnswGraph.from_bytes(graph.to_bytes())
    """

    def __init__(self, index: faiss.IndexHNSWFlat):
        self._index = index

    @classmethod
    def build(cls, vectors: np.ndarray) -> HnswGraph:
        index = faiss.IndexHNSWFlat(vectors.shape[1], NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = BUILD_EFFORT
        index.add(np.ascontiguousarray(vectors, np.float32))
        return cls(index)

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def add(self, vectors: np.ndarray) -> None:
        """Links more vectors into the graph; they get the next rows."""
        self._index.add(np.ascontiguousarray(vectors, np.float32))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows int64 `[Q, k]`, scores float32 `[Q, k]`), best first; -1 rows pad a short answer."""
        params = faiss.SearchParametersHNSW(efSearch=max(SEARCH_EFFORT, k))
        scores, rows = self._index.search(np.ascontiguousarray(queries, np.float32), k, params=params)
        return rows.astype(np.int64), scores.astype(np.float32)

    def to_bytes(self) -> bytes:
        return faiss.serialize_index(self._index).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> HnswGraph:
        index = faiss.deserialize_index(np.frombuffer(data, np.uint8))
        if not isinstance(index, faiss.IndexHNSWFlat):
            raise ValueError(f"not an HNSW graph: {type(index).__name__}")
        return cls(index)
