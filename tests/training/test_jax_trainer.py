"""train.backend=jax: the whole trainer in a subprocess (Keras runs on JAX there), warm-started
from a TensorFlow-trained model, writes the model folder a TensorFlow run writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text  # noqa: F401  (the SavedModel's WordPiece ops)

from alignpipe.config import load_config
from alignpipe.model.encoder import AlignEncoder
from alignpipe.training.trainer import train
from tests.training.conftest import SMALL_RUN, encode, square_image
from tests.training.test_checkpoints import ROOT

JAX_RUN = [*SMALL_RUN, "train.backend=jax"]


def _jax_environment(tmp_path, devices: int) -> dict[str, str]:
    return {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        # The runs of a test compile the same step: a cache shared by them compiles it once.
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax-cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    }


def _task(args: list[str], env: dict[str, str], pause_s: float = 0.0) -> subprocess.Popen:
    command = [sys.executable, "-m", "tests.training.resume_worker", str(pause_s), *args]
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def _check_exported(model_dir: str, embed_dim: int = 16) -> None:
    """The model folder loads like a TensorFlow-trained one and its SavedModel agrees with it."""
    encoder = AlignEncoder.load(model_dir)
    texts = ["a red square on the left", "a blue square"]
    image = encode(square_image("red", "left", (50, 40)), "png")
    saved = tf.saved_model.load(os.path.join(model_dir, "saved_model"))
    served_texts = saved.signatures["embed_text"](texts=tf.constant(texts))["embeddings"].numpy()
    served_images = saved.signatures["embed_image"](images=tf.constant([image]))["embeddings"].numpy()
    assert served_texts.shape == (2, embed_dim)
    np.testing.assert_allclose(served_texts, encoder.embed_texts(texts), atol=1e-5)
    np.testing.assert_allclose(served_images, encoder.embed_images([image]), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(served_texts, axis=1), 1.0, rtol=1e-5)


@pytest.mark.large
def test_jax_trainer_warm_starts_from_a_tensorflow_model_and_exports_the_same_signatures(
    shards_dir, tmp_path
):
    champion = train(load_config("local", "tiny", SMALL_RUN), shards_dir, str(tmp_path / "champion"))
    cfg = load_config("local", "tiny", [*JAX_RUN, f"train.init_from={champion.model_dir}"])
    model_dir = str(tmp_path / "model")
    code = (
        "import logging\n"
        "from alignpipe.config import Config\n"
        "from alignpipe.training.backend import select_keras_backend\n"
        "logging.basicConfig(level=logging.INFO)\n"
        f"cfg = Config.from_json({cfg.to_json()!r})\n"
        "select_keras_backend(cfg.train.backend)\n"
        "from alignpipe.training.trainer import train\n"
        f"train(cfg, {shards_dir!r}, {model_dir!r}, init_dir=cfg.train.init_from)\n"
    )
    env = _jax_environment(tmp_path, devices=1)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "warm start: the weights of" in done.stderr and "1 devices in 1 process(es)" in done.stderr

    with open(os.path.join(model_dir, "history.json")) as f:
        history = json.load(f)
    assert [row["step"] for row in history] == [1, 2]
    # warm-started: the first row's temperature is the champion's, moved by one step
    assert history[0]["temperature"] == pytest.approx(champion.final_temperature, rel=0.05)
    assert sorted(os.listdir(model_dir)) == sorted(os.listdir(champion.model_dir))
    _check_exported(model_dir)
