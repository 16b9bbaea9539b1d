"""Zero-shot classification: prompts, prompt ensembling, top-1 accuracy."""

from __future__ import annotations

import numpy as np
import pytest

from alignpipe.evaluation.zero_shot import class_embeddings, prompts, top1_accuracy, zero_shot_predictions


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
