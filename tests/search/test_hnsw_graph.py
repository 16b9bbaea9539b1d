import numpy as np
import pytest

from alignpipe.search.hnsw_graph import HnswGraph


def clustered_unit_vectors(n: int, dim: int, clusters: int, seed: int) -> np.ndarray:
    """Unit vectors around `clusters` random centres (noise as large as a centre)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    points = centres[rng.integers(clusters, size=n)] + rng.normal(scale=0.75 / np.sqrt(dim), size=(n, dim))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def exact_top_10(base: np.ndarray, queries: np.ndarray) -> np.ndarray:
    return np.argsort(-(queries @ base.T), axis=1, kind="stable")[:, :10]


def recall_at_10(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)]))


def test_recall_at_10_against_exact_search_is_at_least_095():
    data = clustered_unit_vectors(6200, 64, 60, seed=0)
    base, queries = data[:6000], data[6000:]
    graph = HnswGraph.build(base)
    rows, scores = graph.search(queries, k=10)
    assert rows.shape == scores.shape == (200, 10)
    assert recall_at_10(rows, exact_top_10(base, queries)) >= 0.95
    # scores are the exact dot products of the rows found, best first
    np.testing.assert_allclose(scores, np.einsum("qd,qkd->qk", queries, base[rows]), atol=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)


def test_serialised_graph_answers_the_same_and_grows_with_add():
    data = clustered_unit_vectors(1100, 16, 10, seed=1)
    graph = HnswGraph.build(data[:1000])
    again = HnswGraph.from_bytes(graph.to_bytes())
    np.testing.assert_array_equal(again.search(data[:5], 7)[0], graph.search(data[:5], 7)[0])
    again.add(data[1000:])
    assert len(again) == 1100 and again.search(data[1050:1051], 1)[0][0, 0] == 1050
    with pytest.raises(ValueError, match="not an HNSW graph"):
        import faiss

        HnswGraph.from_bytes(faiss.serialize_index(faiss.IndexFlatIP(4)).tobytes())
