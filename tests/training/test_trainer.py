"""train(): a few real steps on synthetic shards, the model directory, input errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text  # noqa: F401  (the SavedModel's WordPiece ops)

from alignpipe.config import Config, load_config
from alignpipe.errors import InputError
from alignpipe.filtering.funnel import FunnelReport, write_funnel_json
from alignpipe.model.encoder import AlignEncoder
from alignpipe.training.trainer import TrainResult, train
from tests.training.conftest import SMALL_MODEL, encode, square_image

SMALL = [
    *SMALL_MODEL,
    "model.max_text_tokens=10",
    "model.vocab_size=80",
    "train.batch_size=8",
    "train.steps=4",
    "train.warmup_steps=2",
    "train.learning_rate=2e-3",
    "train.log_every_steps=2",
    "train.shuffle_buffer=16",
    "train.temperature_init=1.0",  # the first loss is then the chance level, 2 ln(batch)
]


@pytest.mark.large
def test_train_writes_a_loadable_model_dir(shards_dir, tmp_path):
    cfg = load_config("local", "tiny", SMALL)
    model_dir = str(tmp_path / "model")
    logged: list[dict] = []
    result = train(cfg, shards_dir, model_dir, on_log=logged.append)

    assert isinstance(result, TrainResult)
    assert (result.steps, result.num_pairs, result.model_dir) == (4, 48, model_dir)
    assert [row["step"] for row in logged] == [1, 2, 4]
    assert set(logged[0]) == {"step", "loss", "temperature", "learning_rate", "examples_per_s"}
    np.testing.assert_allclose(logged[0]["loss"], 2 * np.log(8), rtol=0.05)  # chance at the start
    np.testing.assert_allclose([row["learning_rate"] for row in logged], [1e-3, 2e-3, 1e-3], rtol=1e-5)
    assert result.final_loss == logged[-1]["loss"] and result.final_temperature == pytest.approx(
        logged[-1]["temperature"]
    )
    assert result.final_temperature != 1.0  # the temperature is trained

    files = sorted(os.listdir(model_dir))
    assert files == [
        "history.json",
        "model.keras",
        "model_config.json",
        "saved_model",
        "training_curves.png",
        "vocab.txt",
    ]
    with open(os.path.join(model_dir, "history.json")) as f:
        assert json.load(f) == logged
    with open(os.path.join(model_dir, "model_config.json")) as f:
        assert Config.from_json(f.read()) == cfg
    with open(os.path.join(model_dir, "training_curves.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"

    encoder = AlignEncoder.load(model_dir)
    texts = encoder.embed_texts(["a red square on the left", "a blue square", "zebra"])
    images = encoder.embed_images([encode(square_image("red", "left", (50, 40)), "jpeg")] * 2)
    pixels = encoder.embed_images(np.stack([square_image("green", "right", (50, 40))] * 3))
    for embeddings, n in ((texts, 3), (images, 2), (pixels, 3)):
        assert embeddings.shape == (n, 16) and embeddings.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)


def test_missing_data_dir_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no pair shards"):
        train(load_config("local", "tiny", SMALL), str(tmp_path / "nothing"), str(tmp_path / "model"))


def test_fewer_pairs_than_a_batch_is_an_input_error(shards_dir, tmp_path):
    cfg = load_config("local", "tiny", SMALL + ["train.batch_size=64"])
    with pytest.raises(InputError, match="48 pairs, fewer than one batch") as error:
        train(cfg, shards_dir, str(tmp_path / "model"))
    message = str(error.value)
    assert "no funnel.json beside the shards, the pairs were counted" in message
    assert "lower train.batch_size to at most 48" in message


def test_the_pair_count_comes_from_the_filter_funnel_and_names_the_rule(shards_dir, tmp_path):
    """The filter's funnel.json is trusted for the count, so the shards are not read to fail."""
    funnel = FunnelReport.from_outcomes(2927, {"kept": 40, "text_rare_token": 2085, "text_too_short": 802})
    write_funnel_json(funnel, os.path.join(shards_dir, "funnel.json"))
    cfg = load_config("local", "tiny", SMALL + ["train.batch_size=64"])
    with pytest.raises(InputError) as error:
        train(cfg, shards_dir, str(tmp_path / "model"))
    message = str(error.value)
    assert "has 40 pairs, fewer than one batch (train.batch_size=64)" in message
    assert "the filter kept 40 of 2927 pairs, and text_rare_token dropped the most (2085)" in message
    assert "lower train.batch_size to at most 40" in message
    assert "raise filter.rare_token_vocab_size or lower filter.rare_token_min_word_share" in message
    assert not os.path.exists(tmp_path / "model")


@pytest.mark.large
def test_train_under_mirrored_strategy_on_two_cpus(shards_dir, tmp_path):
    """The whole trainer on 2 logical CPUs (configured before TF starts: a subprocess)."""
    model_dir = str(tmp_path / "model")
    code = (
        "import sys, tensorflow as tf\n"
        "cpu = tf.config.list_physical_devices('CPU')[0]\n"
        "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)\n"
        "from alignpipe.config import load_config\n"
        "from alignpipe.training.trainer import train\n"
        f"cfg = load_config('local', 'tiny', {SMALL + ['train.strategy=mirrored', 'train.steps=2']!r})\n"
        f"result = train(cfg, {shards_dir!r}, {model_dir!r})\n"
        "print('LOSSES', [row['loss'] for row in result.history])\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    losses = json.loads(out.stdout.split("LOSSES", 1)[1].strip())
    np.testing.assert_allclose(losses[0], 2 * np.log(8), rtol=0.05)  # the global batch's chance level
    assert AlignEncoder.load(model_dir).embed_texts(["a red square"]).shape == (1, 16)


@pytest.mark.large
def test_several_steps_per_call_train_exactly_as_one(shards_dir, tmp_path):
    """steps_per_execution changes how steps are dispatched, not what they compute."""
    runs = {}
    for per_call in (1, 3):
        cfg = load_config(
            "local",
            "tiny",
            [*SMALL, "train.steps=7", "train.log_every_steps=5", f"train.steps_per_execution={per_call}"],
        )
        result = train(cfg, shards_dir, str(tmp_path / f"model-{per_call}"))
        runs[per_call] = (result, AlignEncoder.load(result.model_dir).embed_texts(["a red square"]))
    (one, one_texts), (three, three_texts) = runs[1], runs[3]
    assert [row["step"] for row in three.history] == [1, 5, 7]
    np.testing.assert_allclose(
        [r["loss"] for r in three.history], [r["loss"] for r in one.history], rtol=1e-6
    )
    np.testing.assert_allclose(three_texts, one_texts, atol=1e-6)


@pytest.mark.large
def test_mixed_bfloat16_trains_and_the_model_folder_computes_in_float32(shards_dir, tmp_path, caplog):
    cfg = load_config("local", "tiny", [*SMALL, "train.precision=mixed_bfloat16"])
    with caplog.at_level("INFO", logger="alignpipe"):
        result = train(cfg, shards_dir, str(tmp_path / "model"))
    assert "precision: mixed_bfloat16" in caplog.text
    assert np.isfinite([row["loss"] for row in result.history]).all()
    encoder = AlignEncoder.load(result.model_dir)
    assert encoder.model.image_encoder.get_layer("efficientnet").dtype_policy.name == "float32"
    saved = tf.saved_model.load(os.path.join(result.model_dir, "saved_model"))
    texts = ["a red square", "a blue circle"]
    exported = saved.signatures["embed_text"](texts=tf.constant(texts))["embeddings"].numpy()
    assert exported.dtype == np.float32
    np.testing.assert_allclose(exported, encoder.embed_texts(texts), atol=1e-5)
