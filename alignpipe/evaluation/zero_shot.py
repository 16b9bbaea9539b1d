"""Zero-shot classification with prompt ensembling (CLIP section 3.1.4; ALIGN section 6)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def prompts(class_names: Sequence[str], templates: Sequence[str]) -> list[str]:
    """Every template filled with every class name, class-major: `[C * T]` strings.

    Templates hold `{}` where the class name goes ("a photo of a {}.").
    """
    return [template.replace("{}", name) for name in class_names for template in templates]


def class_embeddings(
    embed_texts: Callable[[list[str]], np.ndarray],
    class_names: Sequence[str],
    templates: Sequence[str],
) -> np.ndarray:
    """One classifier weight per class: the normalised mean of its prompt embeddings.

    Args:
        embed_texts: maps N strings to unit-norm embeddings `[N, dim]`.
        class_names: C names.
        templates: T prompt templates.

    Returns:
        float32 `[C, dim]`, unit norm.
    """
    texts = prompts(class_names, templates)
    embeddings = np.asarray(embed_texts(texts), np.float32)
    embeddings = embeddings.reshape(len(class_names), len(templates), -1).mean(axis=1)
    return embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)


def zero_shot_predictions(image_embeddings: np.ndarray, class_weights: np.ndarray) -> np.ndarray:
    """The most similar class of each image: int `[N]`.

    Args:
        image_embeddings: `[N, dim]`.
        class_weights: `[C, dim]`, from `class_embeddings`.
    """
    return np.argmax(np.asarray(image_embeddings) @ np.asarray(class_weights).T, axis=1)


def zero_shot_top1(
    image_embeddings: np.ndarray, class_weights: np.ndarray, labels: Sequence[int] | np.ndarray
) -> float:
    """Top-1 accuracy of the most similar class, ties broken uniformly at random in expectation.

    An image whose label is among the `n` classes tied at its highest score counts `1 / n`,
    so a model that scores every class the same gets exactly chance (1 / C) whatever the
    class balance; `np.argmax` would always pick the first class and score its share.

    Args:
        image_embeddings: `[N, dim]`.
        class_weights: `[C, dim]`, from `class_embeddings`.
        labels: int `[N]`, each image's class.

    Returns:
        The accuracy in [0, 1] (0.0 for no examples).
    """
    labels = np.asarray(labels, np.int64)
    scores = np.asarray(image_embeddings, np.float64) @ np.asarray(class_weights, np.float64).T  # [N, C]
    if scores.shape[0] != labels.shape[0]:
        raise ValueError(f"{scores.shape[0]} images but {labels.shape[0]} labels")
    if not labels.size:
        return 0.0
    scores = np.where(np.isnan(scores), -np.inf, scores)
    top = scores == scores.max(axis=1, keepdims=True)  # [N, C]
    return float(np.mean(top[np.arange(labels.size), labels] / top.sum(axis=1)))


def top1_accuracy(predictions: Sequence[int] | np.ndarray, labels: Sequence[int] | np.ndarray) -> float:
    """Fraction of `predictions` equal to `labels` (0.0 for no examples)."""
    predictions, labels = np.asarray(predictions), np.asarray(labels)
    if predictions.shape != labels.shape:
        raise ValueError(f"predictions {predictions.shape} and labels {labels.shape} differ in shape")
    return float(np.mean(predictions == labels)) if labels.size else 0.0
