"""ContrastiveLoss against a plain numpy reference, and on two replicas."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from alignpipe.model.contrastive_loss import ContrastiveLoss


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=1, keepdims=True))


def reference_loss(images: np.ndarray, texts: np.ndarray, temperature: float, smoothing: float) -> float:
    """ALIGN eq. 1 + 2 written out on the whole batch, in float64."""
    n = len(images)
    logits = images @ texts.T / temperature
    targets = (1 - smoothing) * np.eye(n) + smoothing / n
    image_to_text = -(targets * log_softmax(logits)).sum(axis=1).mean()
    text_to_image = -(targets * log_softmax(logits.T)).sum(axis=1).mean()
    return float(image_to_text + text_to_image)


def unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("temperature", [1.0, 0.1, 1 / 64])
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.5])
def test_loss_matches_numpy_reference(temperature, smoothing):
    rng = np.random.default_rng(0)
    images, texts = unit_rows(rng, 12, 8), unit_rows(rng, 12, 8)
    loss = ContrastiveLoss(label_smoothing=smoothing)(
        images.astype("float32"), texts.astype("float32"), temperature
    )
    np.testing.assert_allclose(float(loss), reference_loss(images, texts, temperature, smoothing), rtol=1e-4)


def test_loss_is_asymmetric_in_directions_but_sums_both():
    rng = np.random.default_rng(1)
    images, texts = unit_rows(rng, 6, 4), unit_rows(rng, 6, 4)
    swapped = ContrastiveLoss(0.1)(texts.astype("float32"), images.astype("float32"), 0.5)
    loss = ContrastiveLoss(0.1)(images.astype("float32"), texts.astype("float32"), 0.5)
    np.testing.assert_allclose(float(swapped), float(loss), rtol=1e-5)


def test_aligned_pairs_score_lower_than_random_pairs():
    rng = np.random.default_rng(2)
    images = unit_rows(rng, 16, 32).astype("float32")
    aligned = ContrastiveLoss(0.0)(images, images, 0.05)
    shuffled = ContrastiveLoss(0.0)(images, images[::-1], 0.05)
    assert float(aligned) < 0.01 < float(shuffled)


def test_uniform_embeddings_give_twice_log_batch():
    images = np.ones((8, 4), "float32") / 2.0
    loss = ContrastiveLoss(0.1)(images, images, 1.0)
    np.testing.assert_allclose(float(loss), 2 * np.log(8), rtol=1e-6)


def test_label_smoothing_out_of_range_is_rejected():
    with pytest.raises(ValueError, match="label_smoothing"):
        ContrastiveLoss(1.0)


def test_gradient_flows_to_temperature():
    rng = np.random.default_rng(3)
    images, texts = unit_rows(rng, 8, 4).astype("float32"), unit_rows(rng, 8, 4).astype("float32")
    temperature = tf.Variable(1.0)
    with tf.GradientTape() as tape:
        loss = ContrastiveLoss(0.1)(images + texts, images + texts, temperature)  # aligned pairs
    assert float(tape.gradient(loss, temperature)) > 0  # a lower temperature lowers the loss


def test_distributed_loss_and_gradients_equal_single_device():
    """Two logical CPUs under MirroredStrategy (configured before TF starts: a subprocess)."""
    script = os.path.join(os.path.dirname(__file__), "distributed_loss_check.py")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run([sys.executable, script], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    np.testing.assert_allclose(result["distributed_loss"], result["single_loss"], rtol=1e-5)
    reference = reference_loss(
        np.array(result["image_embeddings"]),
        np.array(result["text_embeddings"]),
        result["temperature"],
        result["label_smoothing"],
    )
    np.testing.assert_allclose(result["distributed_loss"], reference, rtol=1e-4)
    # Each replica holds only its share; the shares sum to the whole.
    assert all(abs(share - result["single_loss"]) > 1e-3 for share in result["replica_losses"])
    for name in ("kernel", "temperature"):
        np.testing.assert_allclose(
            result[f"distributed_grad_{name}"], result[f"single_grad_{name}"], rtol=1e-4, atol=1e-6
        )
