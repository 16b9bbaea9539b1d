"""The SavedModel export: signatures that embed raw bytes and strings like the project does."""

from __future__ import annotations

import io

import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  (the WordPiece ops of the SavedModel)
from PIL import Image

from alignpipe.config import load_config
from alignpipe.model.dual_encoder import build_dual_encoder
from alignpipe.model.encoder import AlignEncoder
from alignpipe.model.export import IMAGE_SIGNATURE, TEXT_SIGNATURE, export_saved_model
from alignpipe.model.tokenizer import AlignTokenizer


def _png(height: int, width: int, seed: int, mode: str = "RGB") -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(buffer, format="PNG")
    return buffer.getvalue()


def test_saved_model_signatures_equal_the_encoder(tmp_path):
    cfg = load_config("local", "tiny", ["model.image_size=32", "model.image_resize=36", "model.embed_dim=24"])
    tokenizer = AlignTokenizer.from_texts(
        ["a red circle", "two blue squares on white"], 100, cfg.model.max_text_tokens
    )
    encoder = AlignEncoder(build_dual_encoder(cfg.model, cfg.train), tokenizer, cfg)
    export_saved_model(encoder, str(tmp_path / "saved"))

    saved = tf.saved_model.load(str(tmp_path / "saved"))
    images = [_png(50, 40, 0), _png(30, 90, 1, mode="L")]  # portrait, landscape grayscale
    texts = ["a red square", "blue circles", ""]
    embedded_images = saved.signatures[IMAGE_SIGNATURE](images=tf.constant(images))["embeddings"].numpy()
    embedded_texts = saved.signatures[TEXT_SIGNATURE](texts=tf.constant(texts))["embeddings"].numpy()

    assert embedded_images.shape == (2, 24) and embedded_texts.shape == (3, 24)
    np.testing.assert_allclose(embedded_images, encoder.embed_images(images), atol=1e-5)
    np.testing.assert_allclose(embedded_texts, encoder.embed_texts(texts), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(embedded_images, axis=1), 1.0, atol=1e-5)
