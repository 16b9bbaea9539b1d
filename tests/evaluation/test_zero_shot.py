"""Zero-shot classification: prompts, prompt ensembling, top-1 accuracy."""

from __future__ import annotations

import numpy as np
import pytest

from alignpipe.evaluation.zero_shot import (
    class_embeddings,
    prompts,
    top1_accuracy,
    zero_shot_predictions,
    zero_shot_top1,
)


def test_prompts_are_class_major():
    assert prompts(["cat", "dog"], ["a {}.", "a photo of a {}."]) == [
        "a cat.",
        "a photo of a cat.",
        "a dog.",
        "a photo of a dog.",
    ]


def test_class_embedding_is_the_normalised_mean_over_templates():
    table = {"a x": [1.0, 0.0], "the x": [0.0, 1.0], "a y": [0.6, 0.8], "the y": [0.6, 0.8]}
    weights = class_embeddings(
        lambda texts: np.array([table[t] for t in texts]), ["x", "y"], ["a {}", "the {}"]
    )
    np.testing.assert_allclose(weights, [[0.5**0.5, 0.5**0.5], [0.6, 0.8]], rtol=1e-6)


def test_accuracy_on_a_hand_made_similarity():
    class_weights = np.eye(3)  # class c is the c-th axis
    images = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.5, 0.0, 0.6], [0.1, 0.8, 0.1]])
    predictions = zero_shot_predictions(images, class_weights)
    assert predictions.tolist() == [0, 1, 2, 1]
    assert top1_accuracy(predictions, [0, 1, 2, 2]) == pytest.approx(0.75)


def test_accuracy_shape_mismatch_and_empty():
    with pytest.raises(ValueError, match="shape"):
        top1_accuracy([0, 1], [0])
    assert top1_accuracy([], []) == 0.0


def test_zero_shot_top1_matches_argmax_without_ties():
    rng = np.random.default_rng(0)
    images, class_weights = rng.normal(size=(40, 6)), rng.normal(size=(5, 6))
    labels = rng.integers(0, 5, size=40)
    want = top1_accuracy(zero_shot_predictions(images, class_weights), labels)
    assert zero_shot_top1(images, class_weights, labels) == pytest.approx(want)


def test_collapsed_model_scores_chance_whatever_the_class_balance():
    labels = [0] * 90 + [1] * 5 + [2] * 5  # argmax of equal scores would pick class 0: 90%
    collapsed = np.ones((100, 4))
    assert zero_shot_top1(collapsed, np.ones((3, 4)), labels) == pytest.approx(1 / 3)
    assert zero_shot_top1(np.full((100, 4), np.nan), np.ones((3, 4)), labels) == pytest.approx(1 / 3)


def test_a_tie_between_two_classes_counts_half():
    class_weights = np.eye(3)
    images = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert zero_shot_top1(images, class_weights, [1, 2]) == pytest.approx((0.5 + 1.0) / 2)
    with pytest.raises(ValueError, match="labels"):
        zero_shot_top1(images, class_weights, [1])
    assert zero_shot_top1(np.zeros((0, 3)), class_weights, []) == 0.0
