"""Query embeddings from the exported SavedModel (`alignpipe.model.export`).

The server needs only the SavedModel: its `embed_image` and `embed_text` signatures hold both
towers, the WordPiece vocabulary and the evaluation preprocessing, so queries are embedded
exactly as the index's images and alt-texts were.

Example:
    embedder = QueryEmbedder.load("runs/tiny/model")   # a model folder, or its saved_model/
    texts = embedder.embed_texts(["a red circle"])       # float32 [1, D], unit norm
    images = embedder.embed_images([open("cat.jpg", "rb").read()])
"""

from __future__ import annotations

import logging
import os
import tempfile

import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the WordPiece ops the SavedModel uses)

from alignpipe import fs
from alignpipe.errors import InputError
from alignpipe.model.export import IMAGE_SIGNATURE, SAVED_MODEL_DIR, TEXT_SIGNATURE

log = logging.getLogger("alignpipe")
SAVED_MODEL_FILE = "saved_model.pb"


class UndecodableImage(ValueError):
    """The model's image decoder refused a file that passed the header checks."""


def saved_model_path(model: str) -> str:
    """The SavedModel folder of `model`: a model folder written by `train` (its `saved_model/`)
    or a SavedModel folder itself (what the Vertex AI Model Registry is given).

    Raises:
        InputError: neither holds a `saved_model.pb`.
    """
    for candidate in (model, fs.join(model, SAVED_MODEL_DIR)):
        if fs.exists(fs.join(candidate, SAVED_MODEL_FILE)):
            return candidate
    raise InputError(
        f"model {model!r} holds no SavedModel: expected {SAVED_MODEL_FILE} in it or in its "
        f"{SAVED_MODEL_DIR}/ (a model folder written by `alignpipe train`)"
    )


def _local_copy(uri: str, into: str) -> str:
    """Copies the folder at `uri` (gs://...) under the local folder `into`; returns the copy."""
    prefix = uri.rstrip("/") + "/"
    paths = fs.glob(prefix + "**")
    for path in paths:
        local = os.path.join(into, path[len(prefix) :])
        os.makedirs(os.path.dirname(local), exist_ok=True)
        with open(local, "wb") as f:
            f.write(fs.read_bytes(path))
    log.info("copied %d files of %s to %s", len(paths), uri, into)
    return into


class QueryEmbedder:
    """Embeds query texts and images with a SavedModel's two signatures.

    Args:
        saved_model: the loaded SavedModel (`tf.saved_model.load`).
    """

    def __init__(self, saved_model):
        self._saved = saved_model  # keeps the signatures' variables alive
        self._embed_image = saved_model.signatures[IMAGE_SIGNATURE]
        self._embed_text = saved_model.signatures[TEXT_SIGNATURE]
        self.dim = int(self.embed_texts([""]).shape[1])

    @classmethod
    def load(cls, model: str) -> QueryEmbedder:
        """Loads the SavedModel of `model` (see `saved_model_path`), local or in Cloud Storage.

        Raises:
            InputError: no SavedModel there, or one without the two signatures.
        """
        path = saved_model_path(model)
        copy = tempfile.TemporaryDirectory(prefix="alignpipe-model-") if "://" in path else None
        saved = tf.saved_model.load(_local_copy(path, copy.name) if copy else path)
        missing = {IMAGE_SIGNATURE, TEXT_SIGNATURE} - set(saved.signatures)
        if missing:
            raise InputError(f"SavedModel {path!r} has no {', '.join(sorted(missing))} signature")
        embedder = cls(saved)
        embedder._copy = copy  # the SavedModel's assets stay on disk while it is in use
        return embedder

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """float32 `[len(texts), D]`, unit norm."""
        out = self._embed_text(texts=tf.constant(texts, tf.string))["embeddings"]
        return out.numpy().astype(np.float32)

    def embed_images(self, images: list[bytes]) -> np.ndarray:
        """float32 `[len(images), D]`, unit norm, from encoded image files.

        Raises:
            UndecodableImage: TensorFlow's decoder refused one of them.
        """
        try:
            out = self._embed_image(images=tf.constant(images, tf.string))["embeddings"]
        except tf.errors.InvalidArgumentError as e:
            raise UndecodableImage(e.message.splitlines()[0]) from None
        return out.numpy().astype(np.float32)
