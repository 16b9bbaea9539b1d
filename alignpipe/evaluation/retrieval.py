"""Image-text retrieval recall (Flickr30K / MSCOCO protocol), pure numpy.

Every image has one or more captions. Image-to-text: an image is a hit at K when
ANY of its captions is among the K captions most similar to it. Text-to-image: a
caption is a hit at K when its image is among the K images most similar to it.

Candidates rank by position, as a sort does: a candidate scoring the same as the
positive may come before it. Ties are broken uniformly at random, in expectation:
a query whose best positive has `g` candidates scoring strictly higher and ties
with `t` negatives and `c` positives is a hit at K with probability
`1 - C(t, K - g) / C(t + c, K - g)` (the chance that a random order of the tied
block puts a positive among its first `K - g`). Without ties this is the usual 0/1
hit; a model whose scores are all equal gets exactly the chance level of
`chance_recall_at_k`, never more (counting ties in the query's favour would give it
R@1 = 1.0).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def recall_at_k(
    similarity: np.ndarray,
    caption_image: Sequence[int] | np.ndarray,
    ks: Sequence[int] = (1, 5, 10),
    chunk_size: int | None = None,
) -> dict[str, float]:
    """Recall@K in both directions.

    Args:
        similarity: `[num_images, num_captions]` scores (cosine similarities).
        caption_image: `[num_captions]` ints, the image index of each caption.
        ks: the K values.
        chunk_size: rows (image-to-text) or columns (text-to-image) compared at a
            time, bounding the temporary memory to `chunk_size * max(num_images,
            num_captions)` booleans; None: everything at once.

    Returns:
        `{"image_to_text_r{k}": fraction, "text_to_image_r{k}": fraction}` in [0, 1].
        Images without captions are left out of image-to-text.

    Raises:
        ValueError: shapes disagree or a caption names a missing image.
    """
    similarity = np.asarray(similarity, np.float64)
    # A NaN score (a diverged model) ranks last, where it cannot win a place by comparing false.
    similarity = np.where(np.isnan(similarity), -np.inf, similarity)
    caption_image = np.asarray(caption_image, dtype=np.int64)
    num_images, num_captions = similarity.shape
    if caption_image.shape != (num_captions,):
        raise ValueError(f"caption_image has shape {caption_image.shape}, expected ({num_captions},)")
    if num_captions and (caption_image.min() < 0 or caption_image.max() >= num_images):
        raise ValueError(f"caption_image holds indices outside [0, {num_images})")
    chunk = chunk_size or max(num_images, num_captions, 1)
    image_ranks = _image_to_text_ranks(similarity, caption_image, chunk)
    caption_ranks = _text_to_image_ranks(similarity, caption_image, chunk)
    metrics = {}
    for k in ks:
        metrics[f"image_to_text_r{k}"] = _mean_hit(*image_ranks, k)
        metrics[f"text_to_image_r{k}"] = _mean_hit(*caption_ranks, k)
    return metrics


def hit_probability(higher: np.ndarray, tied_negatives: np.ndarray, tied_positives: np.ndarray, k: int):
    """Probability that a query is a hit at `k` when its ties are ordered at random.

    Args:
        higher: int `[Q]`, candidates scoring strictly above the query's best positive.
        tied_negatives: int `[Q]`, negatives scoring the same as that positive.
        tied_positives: int `[Q]`, positives scoring the same as it (>= 1).
        k: the K of recall@K.

    Returns:
        float64 `[Q]`: `1 - C(t, m) / C(t + c, m)` with `m = k - higher` free places, 0 when
        `m <= 0` (C(t, m) = 0 when m > t: the block fits, a sure hit).
    """
    places = k - np.asarray(higher, np.int64)
    t = np.asarray(tied_negatives, np.float64)
    c = np.asarray(tied_positives, np.float64)
    miss = np.ones(places.shape, np.float64)
    for j in range(max(int(places.max(initial=0)), 0)):
        step = np.clip(t - j, 0, None) / np.maximum(t + c - j, 1)
        miss = np.where(j < places, miss * step, miss)
    return np.where(places > 0, 1.0 - miss, 0.0)


def _mean_hit(higher: np.ndarray, tied_negatives: np.ndarray, tied_positives: np.ndarray, k: int) -> float:
    if not higher.size:
        return 0.0
    return float(np.mean(hit_probability(higher, tied_negatives, tied_positives, k)))


def chance_recall_at_k(
    caption_image: Sequence[int] | np.ndarray, num_images: int, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """Expected recall@K of a random ranking, keyed `<direction>_r{k}_chance`.

    Text-to-image: K / num_images. Image-to-text, for an image with c of the M
    captions: 1 - C(M - c, K) / C(M, K), averaged over images with captions.
    """
    caption_image = np.asarray(caption_image, dtype=np.int64)
    num_captions = caption_image.size
    counts = np.bincount(caption_image, minlength=num_images)
    counts = counts[counts > 0]
    metrics = {}
    for k in ks:
        miss = np.ones(counts.shape, np.float64)
        for j in range(min(k, num_captions)):
            miss *= np.clip(num_captions - counts - j, 0, None) / (num_captions - j)
        metrics[f"image_to_text_r{k}_chance"] = float(np.mean(1.0 - miss)) if counts.size else 0.0
        metrics[f"text_to_image_r{k}_chance"] = min(k / max(num_images, 1), 1.0)
    return metrics


_NO_RANKS = (np.zeros(0, np.int64),) * 3


def _image_to_text_ranks(
    similarity: np.ndarray, caption_image: np.ndarray, chunk: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each image with captions: captions above its best caption, negatives and positives
    tied with it (`hit_probability`'s arguments)."""
    num_images = similarity.shape[0]
    has_caption = np.bincount(caption_image, minlength=num_images) > 0
    parts = []
    for start in range(0, num_images, chunk):
        rows = similarity[start : start + chunk]  # [chunk, num_captions]
        positive = caption_image[None, :] == np.arange(start, start + rows.shape[0])[:, None]
        best = np.where(positive, rows, -np.inf).max(axis=1, initial=-np.inf)[:, None]  # [chunk, 1]
        tied = rows == best
        higher = (rows > best).sum(axis=1)
        parts.append((higher, (tied & ~positive).sum(axis=1), (tied & positive).sum(axis=1)))
    if not parts:
        return _NO_RANKS
    return tuple(np.concatenate(column)[has_caption] for column in zip(*parts, strict=True))


def _text_to_image_ranks(
    similarity: np.ndarray, caption_image: np.ndarray, chunk: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each caption: images above its own image, images tied with it, and 1 (its image)."""
    num_captions = similarity.shape[1]
    parts = []
    for start in range(0, num_captions, chunk):
        columns = similarity[:, start : start + chunk]  # [num_images, chunk]
        owners = caption_image[start : start + chunk]
        positive = columns[owners, np.arange(columns.shape[1])][None, :]  # [1, chunk]
        parts.append(((columns > positive).sum(axis=0), (columns == positive).sum(axis=0) - 1))
    if not parts:
        return _NO_RANKS
    higher, tied = (np.concatenate(column) for column in zip(*parts, strict=True))
    return higher, tied, np.ones_like(higher)
