"""ImageEncoder, TextEncoder and DualEncoder: shapes, norms, temperature, saving."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from alignpipe.config import load_config
from alignpipe.model.contrastive_loss import ContrastiveLoss
from alignpipe.model.dual_encoder import DualEncoder, build_dual_encoder
from alignpipe.model.image_encoder import ImageEncoder, efficientnet_trunk
from alignpipe.model.text_encoder import TextEncoder
from tests.training.conftest import SMALL_MODEL

SMALL = [
    *SMALL_MODEL,
    "model.max_text_tokens=8",
    "model.vocab_size=50",
    "model.embed_dim=24",
]


def inputs(batch: int = 3, size: int = 32, seq: int = 8) -> dict:
    rng = np.random.default_rng(0)
    return {
        "images": rng.uniform(0, 255, size=(batch, size, size, 3)).astype("float32"),
        "token_ids": rng.integers(5, 50, size=(batch, seq)).astype("int32"),
        "segment_ids": np.zeros((batch, seq), "int32"),
        "padding_mask": np.ones((batch, seq), bool),
    }


@pytest.fixture(scope="module")
def model() -> DualEncoder:
    cfg = load_config(
        "local", "tiny", SMALL + ["train.temperature_lr_multiplier=10", "train.temperature_init=1.0"]
    )
    return build_dual_encoder(cfg.model, cfg.train)


def test_outputs_are_unit_norm_embeddings(model):
    outputs = model(inputs())
    for key in ("image_embeddings", "text_embeddings"):
        assert outputs[key].shape == (3, 24)
        np.testing.assert_allclose(np.linalg.norm(outputs[key], axis=1), 1.0, rtol=1e-5)


def test_temperature_starts_at_init(model):
    np.testing.assert_allclose(float(model.temperature), 1.0)


def test_efficientnet_trunk_stops_before_top_conv():
    """ALIGN pools the last block: 320 channels for B0 (not top_conv's 1280), 640 for B7."""
    trunk = efficientnet_trunk("efficientnet_b0", 32)
    assert trunk.output.shape[-1] == 320
    assert not any(layer.name == "top_conv" for layer in trunk.layers)


def test_image_projection_only_when_sizes_differ():
    same = ImageEncoder(
        "efficientnet_scaled", 32, embed_dim=80, width_coefficient=0.25, depth_coefficient=0.25
    )
    other = ImageEncoder(
        "efficientnet_scaled", 32, embed_dim=24, width_coefficient=0.25, depth_coefficient=0.25
    )
    assert "image_projection" not in [layer.name for layer in same.layers]
    assert "image_projection" in [layer.name for layer in other.layers]


def test_efficientnetv2_trunk_uses_fused_blocks_early_and_scales():
    """V2-B0's stacks: fused MBConv in stages 1-3, MBConv after; 192 * width channels out."""
    trunk = efficientnet_trunk("efficientnetv2_scaled", 32, width_coefficient=0.5, depth_coefficient=0.5)
    body = trunk.get_layer("efficientnet_body")
    kinds = {type(layer).__name__ for layer in body.layers}
    assert {"FusedMBConvBlock", "MBConvBlock"} <= kinds
    assert trunk.output.shape[-1] == 96


def test_image_dropout_round_trips_through_the_config():
    encoder = ImageEncoder("efficientnetv2_scaled", 32, 16, 0.25, 0.25, dropout=0.0)
    restored = ImageEncoder.from_config(encoder.get_config())
    assert restored.dropout == 0.0 and restored.architecture == "efficientnetv2_scaled"


def test_unknown_architecture_is_rejected():
    with pytest.raises(ValueError, match="unknown image encoder"):
        efficientnet_trunk("resnet50", 32)


def test_text_embedding_ignores_padding():
    encoder = TextEncoder(50, 1, 2, 16, 32, 8, embed_dim=12, dropout=0.0)
    short = {
        "token_ids": np.array([[1, 7, 2, 0, 0, 0]], "int32"),
        "segment_ids": np.zeros((1, 6), "int32"),
        "padding_mask": np.array([[True, True, True, False, False, False]]),
    }
    padded = dict(short, token_ids=np.array([[1, 7, 2, 9, 9, 9]], "int32"))
    np.testing.assert_allclose(encoder(short), encoder(padded), atol=1e-6)


def test_mismatched_embedding_sizes_are_rejected():
    image = ImageEncoder("efficientnet_scaled", 32, 16, 0.25, 0.25)
    text = TextEncoder(50, 1, 2, 16, 32, 8, embed_dim=12)
    with pytest.raises(ValueError, match="embed_dim"):
        DualEncoder(image, text)


def test_save_and_load_round_trip(model, tmp_path):
    path = str(tmp_path / "model.keras")
    model.temperature_parameter.assign(0.05)
    model.save(path)
    loaded = keras.saving.load_model(path, compile=False)
    assert isinstance(loaded, DualEncoder)
    assert loaded.temperature_lr_multiplier == 10.0
    np.testing.assert_allclose(float(loaded.temperature), math.exp(0.5), rtol=1e-6)
    for key, value in model(inputs()).items():
        np.testing.assert_allclose(loaded(inputs())[key], value, atol=1e-5)
    model.temperature_parameter.assign(0.0)


@pytest.mark.parametrize("multiplier", [1.0, 10.0])
def test_temperature_multiplier_is_a_learning_rate_multiplier_for_adam(multiplier):
    """One Adam step moves log(temperature) by multiplier * lr (Adam's first step is lr * sign)."""
    image = ImageEncoder("efficientnet_scaled", 32, 8, 0.25, 0.25)
    text = TextEncoder(50, 1, 2, 16, 32, 8, embed_dim=8)
    model = DualEncoder(image, text, temperature_init=1.0, temperature_lr_multiplier=multiplier)
    optimizer = keras.optimizers.Adam(learning_rate=1e-3)
    rng = np.random.default_rng(0)
    embeddings = tf.math.l2_normalize(rng.normal(size=(4, 8)).astype("float32"), axis=1)
    with tf.GradientTape() as tape:
        loss = ContrastiveLoss(0.1)(embeddings, embeddings, model.temperature)
    optimizer.apply(tape.gradient(loss, [model.temperature_parameter]), [model.temperature_parameter])
    np.testing.assert_allclose(math.log(float(model.temperature)), -multiplier * 1e-3, rtol=1e-3)


def test_zero_multiplier_freezes_the_temperature():
    image = ImageEncoder("efficientnet_scaled", 32, 8, 0.25, 0.25)
    text = TextEncoder(50, 1, 2, 16, 32, 8, embed_dim=8)
    model = DualEncoder(image, text, temperature_init=1 / 32, temperature_lr_multiplier=0.0)
    with tf.GradientTape() as tape:
        temperature = model.temperature
    assert float(tape.gradient(temperature, model.temperature_parameter)) == 0.0
    np.testing.assert_allclose(float(temperature), 1 / 32)
