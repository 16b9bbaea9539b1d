"""Zero-shot evaluation of a trained model directory on named held-out sets."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from alignpipe import fs
from alignpipe.config import Config
from alignpipe.data.eval_sets import (
    RetrievalSet,
    classification_sets,
    load_classification_set,
    load_retrieval_set,
    retrieval_sets,
)
from alignpipe.errors import InputError
from alignpipe.evaluation.retrieval import chance_recall_at_k, recall_at_k
from alignpipe.evaluation.zero_shot import class_embeddings, zero_shot_top1
from alignpipe.model.encoder import AlignEncoder
from alignpipe.model.image_preprocessing import decode_image
from alignpipe.progress import Progress

log = logging.getLogger("alignpipe")

TOP_N = 5  # results shown per retrieval example


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """Metrics and a few retrieval examples, per named set.

    Attributes:
        metrics: `<set>/<metric>`: a retrieval set's `image_to_text_r{k}` and
            `text_to_image_r{k}` (fractions, for each `eval.recall_ks`) with their `*_chance`
            levels; a classification set's `zero_shot_top1` with `zero_shot_top1_chance`
            (1 / classes).
        examples: retrieval set name -> `{"text_to_image": [...], "image_to_text": [...]}`;
            each item is `{"query": caption or image path, "answer": the positive image
            path or captions, "results": [{"image" or "caption", "score", "correct"}]
            (top 5)}`.
        counts: `<set>/images` and `<set>/captions` or `<set>/classes`.
    """

    metrics: dict[str, float]
    examples: dict[str, dict[str, list[dict]]]
    counts: dict[str, int]


def evaluate(cfg: Config, model_dir: str, num_examples: int = 8) -> EvalResult:
    """Zero-shot retrieval on each of `eval.retrieval_sets` and classification on each of
    `eval.classification_sets`.

    Args:
        cfg: `eval.*` names the sets, prompts, recall Ks and batch size; the model's
            own sizes come from its `model_config.json`.
        model_dir: a directory written by `alignpipe.training.trainer.train`.
        num_examples: retrieval examples kept per direction and set.

    Raises:
        InputError: the model directory or a set is missing or malformed, an image
            cannot be decoded, or no set is configured.
    """
    if not cfg.eval.retrieval_sets and not cfg.eval.classification_sets:
        raise InputError(
            "nothing to evaluate: eval.retrieval_sets and eval.classification_sets are both empty"
        )
    return evaluate_encoder(cfg, AlignEncoder.load(model_dir), num_examples)


def evaluate_encoder(cfg: Config, encoder: AlignEncoder, num_examples: int = 8) -> EvalResult:
    """`evaluate` for an encoder in memory (e.g. a model still being trained)."""
    metrics: dict[str, float] = {}
    examples: dict[str, dict[str, list[dict]]] = {}
    counts: dict[str, int] = {}
    batch_size = cfg.eval.batch_size
    for name, json_path in retrieval_sets(cfg.eval):
        dataset = load_retrieval_set(json_path, cfg.eval.retrieval_split)
        images = embed_image_files(encoder, dataset.image_paths, batch_size, desc=f"embed {name}")
        captions = encoder.embed_texts(list(dataset.captions), batch_size=batch_size)
        similarity = images @ captions.T  # [num_images, num_captions]
        values = recall_at_k(similarity, dataset.caption_image, cfg.eval.recall_ks)
        values.update(chance_recall_at_k(dataset.caption_image, len(dataset.image_paths), cfg.eval.recall_ks))
        metrics.update({f"{name}/{key}": value for key, value in values.items()})
        examples[name] = retrieval_examples(similarity, dataset, num_examples)
        counts.update({f"{name}/images": len(dataset.image_paths), f"{name}/captions": len(dataset.captions)})
    for name, folder in classification_sets(cfg.eval):
        dataset = load_classification_set(folder)
        images = embed_image_files(encoder, dataset.image_paths, batch_size, desc=f"embed {name}")
        weights = class_embeddings(
            lambda texts: encoder.embed_texts(texts, batch_size=batch_size),
            dataset.class_names,
            dataset.templates or cfg.eval.prompt_templates,
        )
        metrics[f"{name}/zero_shot_top1"] = zero_shot_top1(images, weights, dataset.labels)
        metrics[f"{name}/zero_shot_top1_chance"] = 1.0 / len(dataset.class_names)
        counts.update(
            {f"{name}/images": len(dataset.image_paths), f"{name}/classes": len(dataset.class_names)}
        )
    log.info("evaluation: %s", ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())))
    return EvalResult(metrics, examples, counts)


def embed_image_files(
    encoder: AlignEncoder, paths: Sequence[str], batch_size: int, desc: str = "embed images"
) -> np.ndarray:
    """Embeddings `[len(paths), dim]` of image files, read and embedded a batch at a time.

    Raises:
        InputError: an image is missing or cannot be decoded (the message names it).
    """
    batches = []
    with Progress(total=len(paths), desc=desc, unit="img") as progress:
        for start in range(0, len(paths), batch_size):
            chunk = list(paths[start : start + batch_size])
            files = [_read_file(path) for path in chunk]
            try:
                batches.append(encoder.embed_images(files, batch_size))
            except tf.errors.InvalidArgumentError:
                for path, data in zip(chunk, files, strict=True):
                    _check_decodes(path, data)
                raise
            progress.update(len(chunk))
    return np.concatenate(batches) if batches else np.zeros((0, encoder.model.image_encoder.embed_dim))


def _read_file(path: str) -> bytes:
    if not fs.exists(path):
        raise InputError(f"evaluation image {path!r} does not exist")
    return fs.read_bytes(path)


def _check_decodes(path: str, data: bytes) -> None:
    try:
        decode_image(tf.constant(data))
    except tf.errors.InvalidArgumentError:
        raise InputError(f"evaluation image {path!r} cannot be decoded") from None


def retrieval_examples(similarity: np.ndarray, dataset: RetrievalSet, num_examples: int) -> dict[str, list]:
    """The top-5 results of `num_examples` evenly spaced queries in each direction."""
    caption_image = np.asarray(dataset.caption_image)
    text_queries = np.linspace(0, len(dataset.captions) - 1, num_examples).round().astype(int)
    image_queries = np.linspace(0, len(dataset.image_paths) - 1, num_examples).round().astype(int)
    text_to_image = []
    for t in sorted(set(text_queries.tolist())):
        top = np.argsort(-similarity[:, t], kind="stable")[:TOP_N]
        results = [
            {
                "image": dataset.image_paths[i],
                "score": float(similarity[i, t]),
                "correct": bool(i == caption_image[t]),
            }
            for i in top
        ]
        text_to_image.append(
            {
                "query": dataset.captions[t],
                "answer": dataset.image_paths[caption_image[t]],
                "results": results,
            }
        )
    image_to_text = []
    for i in sorted(set(image_queries.tolist())):
        top = np.argsort(-similarity[i], kind="stable")[:TOP_N]
        results = [
            {
                "caption": dataset.captions[t],
                "score": float(similarity[i, t]),
                "correct": bool(caption_image[t] == i),
            }
            for t in top
        ]
        answer = [dataset.captions[t] for t in np.flatnonzero(caption_image == i)]
        image_to_text.append({"query": dataset.image_paths[i], "answer": answer, "results": results})
    return {"text_to_image": text_to_image, "image_to_text": image_to_text}
