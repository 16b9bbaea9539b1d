"""Image-text retrieval recall (Flickr30K / MSCOCO protocol), pure numpy.

Every image has one or more captions. Image-to-text: an image is a hit at K when
ANY of its captions is among the K captions most similar to it. Text-to-image: a
caption is a hit at K when its image is among the K images most similar to it.
Ties count in the query's favour: a positive's rank is the number of candidates
scoring strictly higher.
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
    similarity = np.asarray(similarity)
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
        metrics[f"image_to_text_r{k}"] = float(np.mean(image_ranks < k)) if image_ranks.size else 0.0
        metrics[f"text_to_image_r{k}"] = float(np.mean(caption_ranks < k)) if caption_ranks.size else 0.0
    return metrics


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


def _image_to_text_ranks(similarity: np.ndarray, caption_image: np.ndarray, chunk: int) -> np.ndarray:
    """For each image with captions: how many captions outscore its best caption."""
    num_images = similarity.shape[0]
    has_caption = np.bincount(caption_image, minlength=num_images) > 0
    ranks = []
    for start in range(0, num_images, chunk):
        rows = similarity[start : start + chunk]  # [chunk, num_captions]
        positive = caption_image[None, :] == np.arange(start, start + rows.shape[0])[:, None]
        best_positive = np.where(positive, rows, -np.inf).max(axis=1, initial=-np.inf)  # [chunk]
        ranks.append((rows > best_positive[:, None]).sum(axis=1))
    return np.concatenate(ranks)[has_caption] if ranks else np.zeros(0, np.int64)


def _text_to_image_ranks(similarity: np.ndarray, caption_image: np.ndarray, chunk: int) -> np.ndarray:
    """For each caption: how many images outscore its own image."""
    num_captions = similarity.shape[1]
    ranks = []
    for start in range(0, num_captions, chunk):
        columns = similarity[:, start : start + chunk]  # [num_images, chunk]
        owners = caption_image[start : start + chunk]
        positive = columns[owners, np.arange(columns.shape[1])]  # [chunk]
        ranks.append((columns > positive[None, :]).sum(axis=0))
    return np.concatenate(ranks) if ranks else np.zeros(0, np.int64)
