"""A multi-host slice emulated as 2 processes x 4 CPU devices joined on 127.0.0.1
(train.backend=jax through `trainer.task`): SIGTERMed mid-run and resumed, it ends with the
weights of an uninterrupted run, bit for bit."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess

import numpy as np
import pytest

from alignpipe.config import load_config
from tests.training.conftest import write_shards
from tests.training.test_checkpoints import _wait_for, _without_timing
from tests.training.test_jax_trainer import JAX_RUN, _check_exported, _jax_environment, _task
from trainer.task import EXIT_PREEMPTED


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _slice(
    args: list[str], env: dict[str, str], pause_s: float = 0.0, vertex: bool = False
) -> list[subprocess.Popen]:
    """Two processes of one run, joined through a coordinator on 127.0.0.1: told their places
    by the JAX variables, or (`vertex`) by the CLUSTER_SPEC Vertex AI sets on each replica of
    a two-replica worker pool."""
    coordinator = f"127.0.0.1:{_free_port()}"
    if vertex:
        cluster = {"workerpool0": [coordinator, "127.0.0.1:1"]}
        places = [
            {"CLUSTER_SPEC": json.dumps({"cluster": cluster, "task": {"type": "workerpool0", "index": i}})}
            for i in range(2)
        ]
    else:
        joined = {"JAX_COORDINATOR_ADDRESS": coordinator, "JAX_NUM_PROCESSES": "2"}
        places = [{**joined, "JAX_PROCESS_ID": str(i)} for i in range(2)]
    return [_task(args, {**env, **place}, pause_s) for place in places]


def _finish(processes: list[subprocess.Popen], expected: int = 0) -> list[str]:
    errors = []
    for process in processes:
        _, stderr = process.communicate(timeout=900)
        errors.append(stderr)
        assert process.returncode == expected, stderr[-3000:]
    return errors


def _latest_state(checkpoints: str) -> dict[str, np.ndarray]:
    with open(os.path.join(checkpoints, "checkpoint.json")) as f:
        latest = json.load(f)["checkpoints"][-1]
    with open(os.path.join(checkpoints, latest), "rb") as f, np.load(io.BytesIO(f.read())) as arrays:
        return {key: arrays[key] for key in arrays.files}


@pytest.mark.large
def test_two_processes_of_four_devices_sigtermed_and_resumed_end_like_an_uninterrupted_run(tmp_path):
    shards_dir = str(tmp_path / "pairs")
    write_shards(shards_dir, num_pairs=44)  # 5.5 batches an epoch: batches straddle epochs
    steps = ["train.steps=6", "train.checkpoint_every_steps=2"]
    cfg = load_config("local", "tiny", [*JAX_RUN, *steps])
    env = _jax_environment(tmp_path, devices=4)

    def args(name: str) -> list[str]:
        model_dir = str(tmp_path / name)
        config = cfg.replace(train__checkpoint_dir=model_dir + "-checkpoints").to_json()
        return ["--config-json", config, "--data-dir", shards_dir, "--model-dir", model_dir]

    reference = _finish(_slice(args("reference"), env))
    assert "8 devices in 2 process(es)" in reference[0]

    checkpoints = str(tmp_path / "model-checkpoints")
    interrupted = _slice(args("model"), env, pause_s=1.0)
    _wait_for(os.path.join(checkpoints, "checkpoint.json"), interrupted[0], timeout_s=900)
    for process in interrupted:
        process.send_signal(signal.SIGTERM)
    stderr = _finish(interrupted, expected=EXIT_PREEMPTED)
    stopped = json.loads(str(_latest_state(checkpoints)["record"]))
    assert 2 <= stopped["step"] < 6 and f"SIGTERM after step {stopped['step']}/6" in stderr[1]
    assert len(stopped["stream_positions"]) == 2
    assert not os.path.exists(tmp_path / "model")

    resumed = _finish(_slice(args("model"), env, vertex=True))  # a restarted job, as Vertex AI starts it
    assert f"resuming from {checkpoints}/ckpt-{stopped['step']}.npz" in resumed[1]
    expected, got = _latest_state(str(tmp_path / "reference-checkpoints")), _latest_state(checkpoints)
    record, expected_record = json.loads(str(got.pop("record"))), json.loads(str(expected.pop("record")))
    assert (record["step"], record["stream_positions"]) == (6, expected_record["stream_positions"])
    assert _without_timing(record["history"]) == _without_timing(expected_record["history"])
    assert sorted(got) == sorted(expected) and any(k.startswith("weights_optimizer/") for k in got)
    for key, value in expected.items():  # weights, BatchNorm statistics, seeds, optimiser slots
        np.testing.assert_array_equal(value, got[key], err_msg=key)
    _check_exported(str(tmp_path / "model"))
