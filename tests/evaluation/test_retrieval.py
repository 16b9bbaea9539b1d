"""recall_at_k against a brute-force loop; chunked against full matrix; chance levels."""

from __future__ import annotations

import numpy as np
import pytest

from alignpipe.evaluation.retrieval import chance_recall_at_k, hit_probability, recall_at_k

KS = (1, 5, 10)


def brute_force_recall(similarity: np.ndarray, caption_image: list[int], ks) -> dict[str, float]:
    """Sort every query's candidates and look for a positive in the first K."""
    num_images, num_captions = similarity.shape
    out = {}
    for k in ks:
        hits, queries = 0, 0
        for i in range(num_images):
            positives = [t for t in range(num_captions) if caption_image[t] == i]
            if not positives:
                continue
            queries += 1
            ranked = sorted(range(num_captions), key=lambda t: -similarity[i, t])
            hits += any(t in ranked[:k] for t in positives)
        out[f"image_to_text_r{k}"] = hits / queries
        hits = 0
        for t in range(num_captions):
            ranked = sorted(range(num_images), key=lambda i: -similarity[i, t])
            hits += caption_image[t] in ranked[:k]
        out[f"text_to_image_r{k}"] = hits / num_captions
    return out


def random_retrieval_set(seed: int, num_images: int = 30, max_captions: int = 5):
    rng = np.random.default_rng(seed)
    caption_image = [i for i in range(num_images) for _ in range(int(rng.integers(1, max_captions + 1)))]
    images = rng.normal(size=(num_images, 8))
    captions = images[caption_image] + rng.normal(scale=1.5, size=(len(caption_image), 8))  # noisy matches
    return images @ captions.T, caption_image


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force(seed):
    similarity, caption_image = random_retrieval_set(seed)
    got = recall_at_k(similarity, caption_image, KS)
    want = brute_force_recall(similarity, caption_image, KS)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key]), key
    assert 0 < got["text_to_image_r1"] < 1  # the test data is neither trivial nor hopeless


@pytest.mark.parametrize("chunk_size", [1, 7, 64])
def test_chunked_equals_full_matrix(chunk_size):
    similarity, caption_image = random_retrieval_set(3, num_images=50)
    assert recall_at_k(similarity, caption_image, KS, chunk_size=chunk_size) == recall_at_k(
        similarity, caption_image, KS
    )


def test_hit_when_any_caption_of_the_image_is_in_top_k():
    # Image 0 has captions 0 and 1; caption 1 ranks first for it, caption 0 last.
    similarity = np.array([[0.1, 0.9, 0.5], [0.2, 0.3, 0.8]])
    metrics = recall_at_k(similarity, [0, 0, 1], ks=(1,))
    assert metrics["image_to_text_r1"] == 1.0
    assert metrics["text_to_image_r1"] == pytest.approx(2 / 3)  # caption 0 prefers image 1


def test_perfect_and_reversed_rankings():
    identity = np.eye(6)
    assert set(recall_at_k(identity, list(range(6)), KS).values()) == {1.0}
    reversed_metrics = recall_at_k(-identity, list(range(6)), (1, 5))
    assert reversed_metrics["image_to_text_r1"] == 0.0 and reversed_metrics["image_to_text_r5"] == 0.0


def test_images_without_captions_are_left_out_of_image_to_text():
    similarity = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    assert recall_at_k(similarity, [0, 1], ks=(1,))["image_to_text_r1"] == 1.0


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError, match="shape"):
        recall_at_k(np.zeros((2, 3)), [0, 1], ks=(1,))
    with pytest.raises(ValueError, match="outside"):
        recall_at_k(np.zeros((2, 2)), [0, 2], ks=(1,))


def test_chance_levels_exact():
    chance = chance_recall_at_k([0, 0, 1, 2], num_images=3, ks=(1, 2))
    assert chance["image_to_text_r1_chance"] == pytest.approx((2 / 4 + 1 / 4 + 1 / 4) / 3)
    assert chance["image_to_text_r2_chance"] == pytest.approx((5 / 6 + 1 / 2 + 1 / 2) / 3)
    assert chance["text_to_image_r1_chance"] == pytest.approx(1 / 3)
    assert chance["text_to_image_r2_chance"] == pytest.approx(2 / 3)


def test_chance_levels_match_random_scores():
    rng = np.random.default_rng(0)
    caption_image = [i for i in range(20) for _ in range(int(rng.integers(1, 4)))]
    draws = [
        recall_at_k(rng.normal(size=(20, len(caption_image))), caption_image, (1, 5)) for _ in range(400)
    ]
    chance = chance_recall_at_k(caption_image, 20, (1, 5))
    for key in ("image_to_text_r1", "image_to_text_r5", "text_to_image_r1", "text_to_image_r5"):
        assert np.mean([d[key] for d in draws]) == pytest.approx(chance[f"{key}_chance"], abs=0.02)


def random_tie_break_recall(similarity, caption_image, ks, orders: int, seed: int = 0) -> dict[str, float]:
    """recall@K averaged over random orders of the tied candidates (a sort with random tie keys)."""
    rng = np.random.default_rng(seed)
    totals: dict[str, float] = {}
    for _ in range(orders):
        # A tiny random offset below the score grid orders each tie at random and nothing else.
        jitter = rng.random(similarity.shape) * 1e-6
        for key, value in brute_force_recall(similarity + jitter, caption_image, ks).items():
            totals[key] = totals.get(key, 0.0) + value / orders
    return totals


def test_collapsed_model_scores_chance_not_perfect():
    caption_image = np.repeat(np.arange(100), 5)
    collapsed = np.ones((100, 500))  # every image and caption embedded at the same point
    got = recall_at_k(collapsed, caption_image, KS)
    chance = chance_recall_at_k(caption_image, 100, KS)
    for key, value in got.items():
        assert value == pytest.approx(chance[f"{key}_chance"]), key
    assert got["image_to_text_r1"] == pytest.approx(0.01) and got["text_to_image_r10"] == pytest.approx(0.1)


def test_nan_scores_rank_last():
    similarity = np.eye(4)
    similarity[0, 0] = np.nan  # image 0's only caption has no score
    metrics = recall_at_k(similarity, list(range(4)), ks=(1,))
    assert metrics["image_to_text_r1"] == pytest.approx(3 / 4)
    all_nan = recall_at_k(np.full((4, 4), np.nan), list(range(4)), ks=(1,))
    assert all_nan["text_to_image_r1"] == pytest.approx(1 / 4)


@pytest.mark.parametrize("seed", [0, 1])
def test_ties_are_broken_at_random_in_expectation(seed):
    rng = np.random.default_rng(seed)
    caption_image = [i for i in range(12) for _ in range(int(rng.integers(1, 4)))]
    similarity = rng.integers(0, 3, size=(12, len(caption_image))).astype(float)  # many ties
    got = recall_at_k(similarity, caption_image, (1, 3, 5))
    want = random_tie_break_recall(similarity, caption_image, (1, 3, 5), orders=3000, seed=seed)
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=0.01), key


def test_hit_probability_counts_free_places():
    # 2 candidates above, a tie of 3 negatives and 1 positive: 1 free place at K=3, 4 at K=6.
    assert hit_probability(np.array([2]), np.array([3]), np.array([1]), 3)[0] == pytest.approx(1 / 4)
    assert hit_probability(np.array([2]), np.array([3]), np.array([1]), 6)[0] == 1.0
    assert hit_probability(np.array([3]), np.array([3]), np.array([1]), 3)[0] == 0.0
    # Two tied positives among 2 negatives, 1 place: 1 - C(2,1)/C(4,1) = 1/2.
    assert hit_probability(np.array([0]), np.array([2]), np.array([2]), 1)[0] == pytest.approx(0.5)
