"""Builds or extends the index of a corpus with a trained model: the index stage's core.

`build_index` embeds the filter's kept pairs with the model's SavedModel in a Beam pipeline
(`embed_corpus`) and writes a `CorpusIndex` folder. An index already in the output folder that
was built by the same model (the SavedModel's fingerprint) is extended: only images and
alt-texts it does not hold are embedded, its vectors are kept. Built by another model, it is
rebuilt from scratch, as vectors of two models are not comparable.

Example:
    report = build_index(cfg, "runs/tiny/model", "runs/tiny/filtered", "runs/tiny/index")
    report.images_embedded, report.items
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import logging
import shutil
import time
import uuid
import zlib

import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from alignpipe import fs
from alignpipe.config import Config, beam_pipeline_args
from alignpipe.data.example_proto import Example
from alignpipe.data.records import iter_tfrecords, shard_pattern
from alignpipe.errors import InputError
from alignpipe.model.export import SAVED_MODEL_DIR
from alignpipe.search.corpus_index import MANIFEST, CorpusIndex, Item
from alignpipe.search.embed_corpus import EMBEDDED_PREFIX, EMBEDDED_SUFFIX, embed_corpus

log = logging.getLogger("alignpipe")

STAGING = "staging"  # the pipeline's output, inside the index folder while it is built


@dataclasses.dataclass(frozen=True)
class IndexReport:
    """What one `build_index` did."""

    items: int  # images in the index
    texts: int  # alt-texts in the index
    images_embedded: int  # new images this run embedded
    texts_embedded: int  # new alt-texts this run embedded
    items_kept: int  # items of the earlier index kept with their vectors
    undecodable_images: int  # new images left out: they cannot be decoded
    undecodable_image_texts: int  # their alt-texts, left out with them
    rebuilt: str  # why the earlier index was not extended ("" when it was, or there was none)
    model_uri: str
    model_fingerprint: str
    seconds: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def saved_model_dir(model: str) -> str:
    """The SavedModel of `model`: a model folder written by train (its `saved_model/`) or the
    SavedModel folder itself.

    Raises:
        InputError: `model` is missing or holds no SavedModel.
    """
    for candidate in (fs.join(model, SAVED_MODEL_DIR), model):
        if fs.exists(fs.join(candidate, "saved_model.pb")):
            return candidate
    raise InputError(
        f"model {model!r} holds no SavedModel ({SAVED_MODEL_DIR}/saved_model.pb): is it a model folder?"
    )


def model_fingerprint(saved_model: str) -> str:
    """A digest that changes with the SavedModel's graph and weights: TensorFlow's
    `fingerprint.pb` (its checksums of both), else the graph and the variables' index."""
    parts = ["fingerprint.pb"] if fs.exists(fs.join(saved_model, "fingerprint.pb")) else []
    parts = parts or ["saved_model.pb", "variables/variables.index"]
    digest = hashlib.sha256()
    for part in parts:
        digest.update(fs.read_bytes(fs.join(saved_model, part)))
    return digest.hexdigest()[:32]


def _earlier_index(out_dir: str, fingerprint: str) -> tuple[CorpusIndex | None, str]:
    """(the index in `out_dir` to extend or None, why it is not extended).

    Raises:
        InputError: `out_dir` holds files but is not an index (nothing there is overwritten).
    """
    if not fs.exists(fs.join(out_dir, MANIFEST)):
        others = [p for p in fs.glob(fs.join(out_dir, "*")) if not p.rstrip("/").endswith("/" + STAGING)]
        if others:
            raise InputError(
                f"index folder {out_dir!r} holds other files and no {MANIFEST}: choose an empty folder"
            )
        return None, ""
    try:
        index = CorpusIndex.load(out_dir)
    except ValueError as e:
        raise InputError(str(e)) from None
    if index.model_fingerprint != fingerprint:
        return None, f"built by another model ({index.model_uri or 'unknown'}): rebuilt"
    return index, ""


def read_embedded(folder: str) -> list[dict]:
    """The records `embed_corpus` wrote into `folder`, as dicts of numpy arrays and strings."""
    records = []
    for path in fs.glob(fs.join(folder, f"{EMBEDDED_PREFIX}*{EMBEDDED_SUFFIX}")):
        # (opened as stored: Beam's FileSystems would gunzip a .gz file on the fly)
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as raw:
            frames = list(iter_tfrecords(raw))
        for data in frames:
            f = Example.FromString(data).features.feature
            texts = tuple(t.decode("utf-8") for t in f["texts"].bytes_list.value)
            records.append(
                {
                    "sha256": f["sha256"].bytes_list.value[0].decode("utf-8"),
                    "image_url": f["image/url"].bytes_list.value[0].decode("utf-8"),
                    "page_url": f["page/url"].bytes_list.value[0].decode("utf-8"),
                    "image": np.asarray(f["image/embedding"].float_list.value, np.float32),
                    "thumbnail": f["image/thumbnail"].bytes_list.value[0],
                    "texts": texts,
                    "text_vectors": np.asarray(f["text/embeddings"].float_list.value, np.float32),
                }
            )
    return sorted(records, key=lambda r: r["sha256"])


def extend_index(
    earlier: CorpusIndex | None,
    records: list[dict],
    dim: int,
    model_uri: str,
    fingerprint: str,
    ann_min_vectors: int | None = None,
) -> CorpusIndex:
    """`earlier` (or an empty index) with the new images as new items and the new alt-texts
    appended to their items (earlier rows and item ids unchanged)."""
    items = list(earlier.items) if earlier else []
    row_of = {item.sha256: i for i, item in enumerate(items)}
    images = [earlier.images] if earlier else [np.zeros((0, dim), np.float32)]
    texts = [earlier.texts] if earlier else [np.zeros((0, dim), np.float32)]
    text_items = [earlier.text_items] if earlier else [np.zeros((0,), np.int64)]
    thumbnails = [earlier.thumbnail(i) for i in range(len(items))]
    for record in records:
        sha = record["sha256"]
        if sha not in row_of:
            if record["image"].size != dim:
                continue  # texts of an image the earlier index lacks: not an item of it
            row_of[sha] = len(items)
            items.append(Item(record["image_url"], record["page_url"], (), sha))
            images.append(record["image"][None])
            thumbnails.append(record["thumbnail"] or None)
        item_id = row_of[sha]
        old = items[item_id]
        items[item_id] = dataclasses.replace(old, texts=old.texts + record["texts"])
        texts.append(record["text_vectors"].reshape(len(record["texts"]), dim))
        text_items.append(np.full(len(record["texts"]), item_id, np.int64))
    return CorpusIndex(
        np.concatenate(images),
        np.concatenate(texts),
        np.concatenate(text_items),
        items,
        model_uri,
        thumbnails,
        model_fingerprint=fingerprint,
        ann_min_vectors=ann_min_vectors,
    )


def build_index(cfg: Config, model: str, data_dir: str, out_dir: str, model_uri: str = "") -> IndexReport:
    """Embeds the kept pairs of `data_dir` with `model` into the index folder `out_dir`.

    Args:
        cfg: the run's config (`index.*`, and `runner.beam_args` for the runner).
        model: a model folder written by train, or its SavedModel folder (local or gs://).
        data_dir: the filter's kept pair shards.
        out_dir: the index folder: new, or an index to extend (local or gs://).
        model_uri: how the index names its model (e.g. `models:/align/3`); default `model`.

    Raises:
        InputError: a missing model or data folder, or an `out_dir` that is not an index.
    """
    started = time.time()
    saved_model = saved_model_dir(model)
    if not fs.glob(shard_pattern(data_dir)):
        raise InputError(f"data folder {data_dir!r} has no kept pair shards ({shard_pattern(data_dir)})")
    fingerprint = model_fingerprint(saved_model)
    earlier, rebuilt = _earlier_index(out_dir, fingerprint)
    if rebuilt:
        log.info("index %s: %s", out_dir, rebuilt)
    staging = fs.join(out_dir, STAGING, uuid.uuid4().hex)
    fs.makedirs(staging)
    try:
        counts = embed_corpus(
            beam_pipeline_args(cfg),
            saved_model,
            data_dir,
            staging,
            known_items=fs.join(out_dir, "items.jsonl") if earlier else "",
            image_batch_size=cfg.index.image_batch_size,
            text_batch_size=cfg.index.text_batch_size,
        )
    except (zlib.error, EOFError, gzip.BadGzipFile, ValueError) as e:
        # Beam's TFRecord reader says a cut record with a ValueError naming TFRecord; others are bugs.
        if isinstance(e, ValueError) and "TFRecord" not in str(e):
            raise
        _remove_staging(out_dir)  # the index in `out_dir` is untouched
        raise InputError(
            f"data folder {data_dir!r}: a pair shard is not a complete gzip TFRecord file "
            f"({str(e).splitlines()[0][:200]})"
        ) from None
    records = read_embedded(staging)
    dim = _embed_dim(earlier, records)
    index = extend_index(earlier, records, dim, model_uri or model, fingerprint, cfg.index.ann_min_vectors)
    if earlier is not None:
        index.extend_graphs(earlier)  # new vectors are linked in; the graph is not rebuilt
    index.save(out_dir)
    _remove_staging(out_dir)
    return IndexReport(
        items=len(index),
        texts=len(index.texts),
        images_embedded=counts["images_embedded"],
        texts_embedded=counts["texts_embedded"],
        items_kept=len(earlier) if earlier else 0,
        undecodable_images=counts["undecodable_images"],
        undecodable_image_texts=counts["undecodable_image_texts"],
        rebuilt=rebuilt,
        model_uri=index.model_uri,
        model_fingerprint=fingerprint,
        seconds=time.time() - started,
    )


def _remove_staging(out_dir: str) -> None:
    staging = fs.join(out_dir, STAGING)
    fs.delete(fs.glob(fs.join(staging, "*", "*")))
    if "://" not in staging:  # local folders stay behind their files
        shutil.rmtree(staging, ignore_errors=True)


def _embed_dim(earlier: CorpusIndex | None, records: list[dict]) -> int:
    if earlier is not None:
        return earlier.dim
    for record in records:
        if record["image"].size:
            return int(record["image"].size)
    raise InputError("no image could be embedded: the data folder's shards hold no decodable image")
