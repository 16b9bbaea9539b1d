"""Runs the data-parallel step on 1 and on 8 emulated CPU devices; prints the differences as JSON.

    KERAS_BACKEND=jax XLA_FLAGS=--xla_force_host_platform_device_count=8 \
        python -m tests.training.jax_step_worker

Run in a subprocess by test_jax_step.py: the backend and the device count are fixed when
Keras and JAX are first imported, and the test process already runs Keras on TensorFlow.
"""

from __future__ import annotations

import json

import jax
import keras
import numpy as np

from alignpipe.config import load_config
from alignpipe.model.contrastive_loss import ContrastiveLoss
from alignpipe.model.dual_encoder import build_dual_encoder
from alignpipe.training.jax_step import DataParallelStep, batch_mesh
from alignpipe.training.optimizer import make_optimizers
from tests.training.conftest import SMALL_MODEL

GLOBAL_BATCH = 16  # two examples per emulated device
STEPS = 2


def random_batches(cfg, count: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    size, length = cfg.model.image_size, cfg.model.max_text_tokens
    lengths = rng.integers(3, length + 1, size=(count, GLOBAL_BATCH))
    return {
        "images": rng.uniform(0, 255, (count, GLOBAL_BATCH, size, size, 3)).astype(np.float32),
        "token_ids": rng.integers(5, cfg.model.vocab_size, (count, GLOBAL_BATCH, length)).astype(np.int32),
        "segment_ids": np.zeros((count, GLOBAL_BATCH, length), np.int32),
        "padding_mask": np.arange(length)[None, None, :] < lengths[..., None],
    }


def main() -> dict:
    assert keras.backend.backend() == "jax" and jax.device_count() == 8, jax.devices()
    sizes = [*SMALL_MODEL, "model.max_text_tokens=10", "model.vocab_size=80", "train.warmup_steps=1"]
    cfg = load_config("local", "tiny", [*sizes, f"train.batch_size={GLOBAL_BATCH}", f"train.steps={STEPS}"])
    keras.utils.set_random_seed(0)
    model = build_dual_encoder(cfg.model, cfg.train)
    optimizers = make_optimizers(cfg.train, model)
    loss_fn = ContrastiveLoss(cfg.train.label_smoothing)
    steps = {
        "one_device": DataParallelStep(model, optimizers, loss_fn, batch_mesh(jax.devices()[:1])),
        "eight_devices": DataParallelStep(model, optimizers, loss_fn, batch_mesh()),
    }
    batches = random_batches(cfg, STEPS)
    first = {key: value[0] for key, value in batches.items()}
    results = {}
    for name, step in steps.items():
        loss, gradients = step.loss_and_gradients(step.initial_state(), first)
        state, losses, _ = step.run(step.initial_state(), step.shard(batches))
        results[name] = {
            "loss": np.asarray(loss),
            "gradients": [np.asarray(g) for g in gradients],
            "losses": np.asarray(losses),
            "temperature": step.temperature(state),
            "weights": [np.asarray(w) for w in state.trainable],
            "devices": len(state.trainable[0].sharding.device_set),
        }
    one, eight = results["one_device"], results["eight_devices"]

    def max_difference(a: list, b: list) -> float:
        return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True))

    initial = [np.asarray(v.value) for v in model.trainable_variables]

    def norm(a: list, b: list) -> float:
        return float(np.sqrt(sum(np.sum(np.square(x - y)) for x, y in zip(a, b, strict=True))))

    return {
        "devices": [one["devices"], eight["devices"]],
        "loss": [float(one["loss"]), float(eight["loss"])],
        "loss_difference": abs(float(one["loss"]) - float(eight["loss"])),
        "gradient_difference": max_difference(one["gradients"], eight["gradients"]),
        "largest_gradient": max(float(np.max(np.abs(g))) for g in one["gradients"]),
        "step_losses_difference": float(np.max(np.abs(one["losses"] - eight["losses"]))),
        "temperature": [one["temperature"], eight["temperature"]],
        "weights_difference": max_difference(one["weights"], eight["weights"]),
        "weights_moved": max_difference(one["weights"], initial),
        # ||w_8 - w_1|| / ||w_1 - w_0|| over every weight: the two updates' relative difference
        "update_relative_difference": norm(one["weights"], eight["weights"]) / norm(one["weights"], initial),
    }


if __name__ == "__main__":
    print(json.dumps(main()))
