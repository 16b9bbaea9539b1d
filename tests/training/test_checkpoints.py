"""Checkpoints and resume: save steps, pruning, exact restore, SIGTERM mid-run, rerun = uninterrupted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from alignpipe.config import load_config
from alignpipe.errors import ConfigError
from alignpipe.model.dual_encoder import build_dual_encoder
from alignpipe.model.tokenizer import AlignTokenizer
from alignpipe.training.checkpoints import (
    TrainingCheckpoints,
    checkpoint_dir,
    saved_tokenizer,
    stop_on_sigterm,
)
from alignpipe.training.input import EPOCH_STRIDE, STREAM_POSITION, text_dataset, train_dataset
from alignpipe.training.optimizer import make_optimizers
from alignpipe.training.trainer import train
from tests.training.conftest import write_shards
from tests.training.test_trainer import SMALL
from trainer.task import EXIT_PREEMPTED

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _model_and_optimizers(cfg, seed: int):
    keras.utils.set_random_seed(seed)
    model = build_dual_encoder(cfg.model, cfg.train)
    return model, make_optimizers(cfg.train, model)


def _state(model, optimizers) -> list[np.ndarray]:
    variables = model.variables + optimizers.weights.variables + optimizers.temperature.variables
    return [np.array(v) for v in variables]


def test_saves_every_n_steps_and_the_last_keeps_the_newest_and_restores_exactly(tmp_path):
    cfg = load_config(
        "local",
        "tiny",
        SMALL + ["train.steps=7", "train.checkpoint_every_steps=3", "train.keep_checkpoints=2"],
    )
    model, optimizers = _model_and_optimizers(cfg, seed=0)
    # Optimiser state as after training: moved iterations, non-zero slots, a trained temperature.
    for variable in optimizers.weights.variables + optimizers.temperature.variables:
        variable.assign(variable + tf.cast(tf.random.uniform(variable.shape, 1, 5, tf.int32), variable.dtype))
    model.temperature_parameter.assign(0.25)
    checkpoints = TrainingCheckpoints(str(tmp_path / "ckpt"), cfg, model, optimizers)
    assert checkpoints.restore().step == 0 and checkpoints.latest is None

    assert [step for step in range(1, 8) if checkpoints.due(step)] == [3, 6, 7]
    tokenizer = AlignTokenizer.from_texts(["a red square", "a blue circle"], 80, 10)
    history = [{"step": 1, "loss": 4.0}]
    for step in (3, 6, 7):
        checkpoints.save(step, 100 + step, history, [3.5, 3.25], tokenizer)
    assert [os.path.basename(p) for p in checkpoints.all] == ["ckpt-6", "ckpt-7"]
    assert sorted(os.listdir(tmp_path / "ckpt")) == [
        "checkpoint",
        "ckpt-6.data-00000-of-00001",
        "ckpt-6.index",
        "ckpt-7.data-00000-of-00001",
        "ckpt-7.index",
        "config.json",
        "vocab.txt",
    ]

    fresh_model, fresh_optimizers = _model_and_optimizers(cfg, seed=1)
    pairs = zip(_state(model, optimizers), _state(fresh_model, fresh_optimizers), strict=True)
    assert not all(np.array_equal(a, b) for a, b in pairs)
    resume = TrainingCheckpoints(str(tmp_path / "ckpt"), cfg, fresh_model, fresh_optimizers).restore()
    assert (resume.step, resume.stream_position, resume.history, resume.pending_losses) == (
        7,
        107,
        history,
        [3.5, 3.25],
    )
    for before, after in zip(_state(model, optimizers), _state(fresh_model, fresh_optimizers), strict=True):
        np.testing.assert_array_equal(before, after)
    assert int(fresh_optimizers.weights.iterations) == int(optimizers.weights.iterations) > 0
    assert any("seed_generator" in v.path for v in fresh_model.variables)  # dropout states are covered
    assert saved_tokenizer(str(tmp_path / "ckpt"), cfg).vocabulary == tokenizer.vocabulary


def test_a_checkpoint_folder_of_another_configuration_is_refused(tmp_path):
    cfg = load_config("local", "tiny", SMALL)
    model, optimizers = _model_and_optimizers(cfg, seed=0)
    tokenizer = AlignTokenizer.from_texts(["a red square"], 80, 10)
    TrainingCheckpoints(str(tmp_path), cfg, model, optimizers).save(1, 8, [], [], tokenizer)
    assert saved_tokenizer(str(tmp_path), cfg.replace(train__log_every_steps=7)) is not None
    with pytest.raises(ConfigError, match=r"learning_rate=0.002 there, 0.001 now.*train.checkpoint_dir"):
        saved_tokenizer(str(tmp_path), cfg.replace(train__learning_rate=1e-3))
    assert saved_tokenizer(str(tmp_path / "empty"), cfg) is None


def test_the_stream_from_a_position_is_the_rest_of_the_stream_from_the_start(tmp_path):
    directory = str(tmp_path / "pairs")
    files = write_shards(directory, num_pairs=44)  # 5.5 batches of 8 an epoch
    cfg = load_config("local", "tiny", SMALL + ["train.shuffle_buffer=16", "train.random_flip=true"])
    tokenizer = AlignTokenizer.from_texts(text_dataset(files), 80, 10)

    def batches(start: int, n: int) -> list[dict]:
        dataset = train_dataset(files, tokenizer, cfg.model, cfg.train, 8, start)
        return [{k: v.numpy() for k, v in batch.items()} for batch in dataset.take(n)]

    whole = batches(0, 10)
    for done in (3, 5):  # a start mid-epoch 0; one in epoch 1, after the batch that straddles 0 and 1
        position = int(whole[done - 1][STREAM_POSITION].max()) + 1
        tf.random.set_seed(done)  # the stream depends on train.seed alone, not the global seed
        for a, b in zip(whole[done:], batches(position, 10 - done), strict=True):
            for key in a:
                np.testing.assert_array_equal(a[key], b[key])
    epochs = [divmod(int(p), EPOCH_STRIDE)[0] for p in whole[5][STREAM_POSITION]]
    assert epochs == [0] * 4 + [1] * 4


def test_default_checkpoint_dir_is_beside_the_model_dir():
    cfg = load_config("local", "tiny", [])
    assert checkpoint_dir(cfg, "gs://b/run/model/") == "gs://b/run/model-checkpoints"
    assert checkpoint_dir(cfg.replace(train__checkpoint_dir="/ckpt"), "gs://b/run/model") == "/ckpt"


def test_sigterm_sets_the_request_and_the_old_handler_comes_back():
    previous = signal.getsignal(signal.SIGTERM)
    with stop_on_sigterm() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)  # the handler runs between bytecodes of the main thread
        assert stop.requested
    assert signal.getsignal(signal.SIGTERM) is previous

    outside_main: list = []
    thread = threading.Thread(target=lambda: outside_main.append(stop_on_sigterm().__enter__()))
    thread.start()
    thread.join()
    assert not outside_main[0].requested and signal.getsignal(signal.SIGTERM) is previous


def _task(args: list[str], pause_s: float, checkpoints: str) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "AIP_CHECKPOINT_DIR": checkpoints}
    command = [sys.executable, "-m", "tests.training.resume_worker", str(pause_s), *args]
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def _wait_for(path: str, process: subprocess.Popen, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while not os.path.exists(path):
        if process.poll() is not None:
            pytest.fail(f"training ended before {path} appeared: {process.communicate()[1][-3000:]}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"no {path} after {timeout_s} s")
        time.sleep(0.02)


def _final_state(checkpoints: str) -> dict[str, np.ndarray]:
    """The latest checkpoint's values, less the training log (timings) and the count of saves."""
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(checkpoints))
    skip = ("training_log", "save_counter", "_CHECKPOINTABLE_OBJECT_GRAPH")
    keys = [key for key in reader.get_variable_to_shape_map() if not key.startswith(skip)]
    return {key: reader.get_tensor(key) for key in keys}


def _without_timing(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "examples_per_s"} for row in history]


@pytest.mark.large
def test_sigterm_mid_run_then_a_rerun_ends_like_an_uninterrupted_run(tmp_path):
    shards_dir = str(tmp_path / "pairs")
    write_shards(shards_dir, num_pairs=44)  # 5.5 batches an epoch: batches straddle epochs
    steps = ["train.steps=10", "train.checkpoint_every_steps=3", "train.log_every_steps=1"]
    cfg = load_config("local", "tiny", SMALL + steps)
    reference = train(cfg, shards_dir, str(tmp_path / "reference"))

    model_dir, checkpoints = str(tmp_path / "model"), str(tmp_path / "checkpoints")
    args = ["--config-json", cfg.to_json(), "--data-dir", shards_dir, "--model-dir", model_dir]
    interrupted = _task(args, pause_s=0.5, checkpoints=checkpoints)
    _wait_for(os.path.join(checkpoints, "ckpt-3.index"), interrupted)
    interrupted.send_signal(signal.SIGTERM)
    _, stderr = interrupted.communicate(timeout=120)
    assert interrupted.returncode == EXIT_PREEMPTED, stderr[-3000:]
    stopped_at = int(os.path.basename(tf.train.latest_checkpoint(checkpoints)).split("-")[1])
    assert 3 <= stopped_at < 10  # the step it stopped after (3 or a later one), saved
    assert f"training stopped by SIGTERM after step {stopped_at}/10" in stderr
    assert not os.path.exists(model_dir)

    resumed = train(cfg.replace(train__checkpoint_dir=checkpoints), shards_dir, model_dir)
    assert resumed.resumed_from_step == stopped_at
    assert [row["step"] for row in resumed.history] == list(range(1, 11))
    assert _without_timing(resumed.history) == _without_timing(reference.history)  # every loss, bit for bit
    expected = _final_state(str(tmp_path / "reference-checkpoints"))
    got = _final_state(checkpoints)
    assert sorted(got) == sorted(expected) and any("weights_optimizer" in key for key in got)
    for key, value in expected.items():  # weights, seed states, optimiser slots and iterations, step
        np.testing.assert_array_equal(value, got[key], err_msg=key)
    assert os.path.exists(os.path.join(model_dir, "model.keras"))

    # A finished run, rerun, restores its last step and rewrites the model folder: no training.
    os.remove(os.path.join(reference.model_dir, "model.keras"))
    again = train(cfg, shards_dir, reference.model_dir)
    assert again.resumed_from_step == 10 and again.history == reference.history
    assert os.path.exists(os.path.join(reference.model_dir, "model.keras"))


def test_processes_share_the_stream_and_each_resumes_its_share_from_its_own_position(tmp_path):
    """JAX multi-host input: process p decodes the records whose index is p modulo 2."""
    directory = str(tmp_path / "pairs")
    files = write_shards(directory, num_pairs=44)
    cfg = load_config("local", "tiny", SMALL + ["train.shuffle_buffer=16"])
    tokenizer = AlignTokenizer.from_texts(text_dataset(files), 80, 10)

    def positions(start: int, n: int, process: int) -> list[list[int]]:
        dataset = train_dataset(files, tokenizer, cfg.model, cfg.train, 4, start, 2, process)
        return [batch[STREAM_POSITION].numpy().tolist() for batch in dataset.take(n)]

    whole = [positions(0, 8, process) for process in (0, 1)]
    for process, batches in enumerate(whole):
        assert all(p % EPOCH_STRIDE % 2 == process for batch in batches for p in batch)
    first_epoch = sorted(p for batches in whole for batch in batches[:5] for p in batch if p < EPOCH_STRIDE)
    assert first_epoch == list(range(40))  # together, the processes cover the stream once
    for process in (0, 1):
        resumed = positions(max(whole[process][2]) + 1, 5, process)
        assert resumed == whole[process][3:]
