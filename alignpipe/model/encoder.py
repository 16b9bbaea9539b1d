"""The exported-model API: embed images and texts with a trained model directory."""

from __future__ import annotations

import os
import tempfile

import keras
import numpy as np
import tensorflow as tf

from alignpipe import fs
from alignpipe.config import Config
from alignpipe.errors import InputError
from alignpipe.model.dual_encoder import DualEncoder
from alignpipe.model.export import SAVED_MODEL_DIR, export_saved_model
from alignpipe.model.image_preprocessing import center_crop, preprocess_for_eval, resize_shorter_side
from alignpipe.model.reserved_tokens import VOCAB_FILE
from alignpipe.model.tokenizer import AlignTokenizer

# The model directory written by `alignpipe.training.trainer.train`.
MODEL_FILE = "model.keras"
CONFIG_FILE = "model_config.json"
HISTORY_FILE = "history.json"
CURVES_FILE = "training_curves.png"


class AlignEncoder:
    """A trained dual encoder with its tokenizer and preprocessing.

    Args:
        model: the trained `DualEncoder`.
        tokenizer: the `AlignTokenizer` it was trained with.
        config: the training run's `Config` (image sizes).

    Example:
    ```python
    encoder = AlignEncoder.load("runs/tiny/model")
    images = encoder.embed_images([open("cat.jpg", "rb").read()])   # [1, D]
    texts = encoder.embed_texts(["a cat", "a dog"])                  # [2, D]
    similarity = images @ texts.T                                    # cosine similarities
    ```
    """

    def __init__(self, model: DualEncoder, tokenizer: AlignTokenizer, config: Config):
        self.model = model
        self.tokenizer = tokenizer
        self.config = config
        size, length = config.model.image_size, config.model.max_text_tokens
        self._image_fn = tf.function(
            lambda images: model.image_encoder(images, training=False),
            input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)],
        )
        text_spec = {
            "token_ids": tf.TensorSpec([None, length], tf.int32),
            "segment_ids": tf.TensorSpec([None, length], tf.int32),
            "padding_mask": tf.TensorSpec([None, length], tf.bool),
        }
        self._text_fn = tf.function(
            lambda tokens: model.text_encoder(tokens, training=False), input_signature=[text_spec]
        )

    @classmethod
    def load(cls, model_dir: str) -> AlignEncoder:
        """Reads `model.keras`, `vocab.txt` and `model_config.json` from `model_dir`.

        Raises:
            InputError: a file is missing or unreadable.
        """
        paths = {name: fs.join(model_dir, name) for name in (MODEL_FILE, VOCAB_FILE, CONFIG_FILE)}
        for name, path in paths.items():
            if not fs.exists(path):
                raise InputError(f"model directory {model_dir!r} has no {name}")
        config = Config.from_json(fs.read_text(paths[CONFIG_FILE]))
        tokenizer = AlignTokenizer.load(paths[VOCAB_FILE], config.model.max_text_tokens)
        with tempfile.TemporaryDirectory() as tmp:
            local = os.path.join(tmp, MODEL_FILE)
            with open(local, "wb") as f:
                f.write(fs.read_bytes(paths[MODEL_FILE]))
            try:
                model = keras.saving.load_model(local, compile=False)
            except (ValueError, OSError) as e:
                raise InputError(f"{paths[MODEL_FILE]} is not a loadable Keras model: {e}") from None
        if not isinstance(model, DualEncoder):
            raise InputError(f"{paths[MODEL_FILE]} holds a {type(model).__name__}, not a DualEncoder")
        return cls(model, tokenizer, config)

    def save(self, model_dir: str, saved_model: bool = True) -> None:
        """Writes `model.keras`, `vocab.txt`, `model_config.json` and `saved_model/` into `model_dir`.

        A model folder always computes in float32, as `load` reads it: a model trained
        in mixed precision (float32 weights) is exported from its float32 reload.

        Args:
            model_dir: a local folder or URI.
            saved_model: False leaves out `saved_model/` (it needs Keras on TensorFlow; the
                JAX trainer writes it from `model.keras` in a TensorFlow process,
                `python -m alignpipe.model.export`).
        """
        fs.makedirs(model_dir)
        with tempfile.TemporaryDirectory() as tmp:
            local = os.path.join(tmp, MODEL_FILE)
            self.model.save(local)
            with open(local, "rb") as f:
                fs.write_bytes(fs.join(model_dir, MODEL_FILE), f.read())
            self.tokenizer.save(fs.join(model_dir, VOCAB_FILE))
            fs.write_text(fs.join(model_dir, CONFIG_FILE), self.config.to_json())
            if not saved_model:
                return
            exported = self
            if self.model.compute_dtype != "float32":
                reloaded = keras.saving.load_model(local, compile=False)
                exported = AlignEncoder(reloaded, self.tokenizer, self.config)
            export_saved_model(exported, fs.join(model_dir, SAVED_MODEL_DIR))

    def embed_images(self, images: list[bytes] | np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Unit-norm image embeddings, with evaluation preprocessing (resize, center crop).

        Args:
            images: encoded image files (any format `tf.io.decode_image` reads), or
                pixels `[N, height, width, 3]` (uint8 or float in [0, 255]).
            batch_size: images per forward pass.

        Returns:
            float32 `[N, embed_dim]`.
        """
        size, resize = self.config.model.image_size, self.config.model.image_resize
        batches = []
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            if isinstance(chunk, np.ndarray):
                pixels = center_crop(resize_shorter_side(tf.convert_to_tensor(chunk), resize), size)
            else:
                pixels = tf.stack([preprocess_for_eval(tf.constant(b), size, resize) for b in chunk])
            batches.append(self._image_fn(pixels).numpy())
        return _concatenate(batches, self.model.image_encoder.embed_dim)

    def embed_texts(self, texts: list[str], batch_size: int = 256) -> np.ndarray:
        """Unit-norm text embeddings.

        Args:
            texts: N strings.
            batch_size: texts per forward pass.

        Returns:
            float32 `[N, embed_dim]`.
        """
        batches = [
            self._text_fn(self.tokenizer(list(texts[start : start + batch_size]))).numpy()
            for start in range(0, len(texts), batch_size)
        ]
        return _concatenate(batches, self.model.text_encoder.embed_dim)


def _concatenate(batches: list[np.ndarray], dim: int) -> np.ndarray:
    if not batches:
        return np.zeros((0, dim), np.float32)
    return np.concatenate(batches).astype(np.float32)
