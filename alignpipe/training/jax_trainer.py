"""`train` on the JAX backend (`train.backend=jax`): TPU slices, GPUs, emulated CPU meshes.

The same run as `alignpipe.training.trainer.train` (same input stream, loss, optimisers,
logged rows, checkpoints every N steps and on SIGTERM, warm start, model folder), with the
step compiled by `jax.jit` over one mesh of every device of every process
(`alignpipe.training.jax_step`). Each process (one per TPU host or GPU VM) runs
`tf.data` on its host, decoding its share of each global batch
(`train.batch_size / process_count` examples); `jax.make_array_from_process_local_data`
assembles the global batch from the processes' shares. Process 0 writes checkpoints
and the model folder; `saved_model/` is written by a TensorFlow process from
`model.keras` (`python -m alignpipe.model.export`), so it is the same SavedModel as a
TensorFlow-trained model's. Keras must already run on JAX (`KERAS_BACKEND=jax`, set by
`trainer.task` from `train.backend`; `alignpipe.training.backend`).

Multi-process runs start with `jax.distributed.initialize` (`initialize_processes`).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable

import jax
import keras
import numpy as np
from jax.experimental import multihost_utils

from alignpipe import fs
from alignpipe.config import Config
from alignpipe.errors import AlignPipeError, ConfigError
from alignpipe.model.contrastive_loss import ContrastiveLoss
from alignpipe.model.dual_encoder import build_dual_encoder
from alignpipe.model.export import SAVED_MODEL_DIR
from alignpipe.training import trainer
from alignpipe.training.checkpoints import StopRequest, checkpoint_dir, stop_on_sigterm
from alignpipe.training.input import (
    EPOCH_STRIDE,
    STREAM_POSITION,
    check_enough_pairs,
    pair_files,
    pairs_in,
    train_dataset,
)
from alignpipe.training.jax_checkpoints import JaxCheckpoints
from alignpipe.training.jax_step import DataParallelStep, batch_mesh
from alignpipe.training.optimizer import make_optimizers
from alignpipe.training.strategy import dtype_policy

log = logging.getLogger("alignpipe")


def initialize_processes(coordinator: str, num_processes: int, process_id: int) -> None:
    """Joins a multi-process JAX run (`jax.distributed.initialize`); CPUs talk over gloo.

    Args:
        coordinator: `host:port` of process 0.
        num_processes: processes in the run.
        process_id: this process's index.
    """
    # Only CPU devices use it (an emulated slice); TPUs and GPUs have their own interconnect.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator, num_processes, process_id)


def precision_policy(precision: str) -> str:
    """`train.precision` on this process's devices: `auto` is bfloat16 on TPUs and GPUs of
    compute capability >= 8.0, float32 elsewhere (CPUs)."""
    if precision != "auto":
        return precision
    device = jax.devices()[0]
    if device.platform == "tpu":
        return "mixed_bfloat16"
    capability = getattr(device, "compute_capability", "0.0")
    if device.platform == "gpu" and float(capability) >= 8.0:
        return "mixed_bfloat16"
    return "float32"


def train_on_jax(
    cfg: Config,
    data_dir: str,
    model_dir: str,
    on_log: Callable[[dict], None] | None = None,
    init_dir: str = "",
) -> trainer.TrainResult:
    """`alignpipe.training.trainer.train` on the JAX backend: same arguments, result and errors."""
    if keras.backend.backend() != "jax":
        raise ConfigError(f"train.backend=jax, but Keras runs on {keras.backend.backend()!r}")
    start = time.monotonic()
    files = pair_files(data_dir)
    num_pairs, funnel = pairs_in(data_dir, files)
    check_enough_pairs(num_pairs, cfg.train.batch_size, data_dir, funnel)
    mesh = batch_mesh()
    if cfg.train.batch_size % mesh.size:
        raise ConfigError(
            f"train.batch_size={cfg.train.batch_size} must be a multiple of the {mesh.size} devices "
            f"of {jax.process_count()} process(es)"
        )
    log.info("training on %d pairs, %d devices in %d process(es)", num_pairs, mesh.size, jax.process_count())
    keras.utils.set_random_seed(cfg.train.seed)
    checkpoints_dir = checkpoint_dir(cfg, model_dir)
    tokenizer = trainer._tokenizer(cfg, data_dir, files, checkpoints_dir, init_dir)
    policy = precision_policy(cfg.train.precision)
    log.info("precision: %s, %d step(s) per call", policy, cfg.train.steps_per_execution)
    with dtype_policy(policy):
        model = build_dual_encoder(cfg.model, cfg.train)
        optimizers = make_optimizers(cfg.train, model)
    step = DataParallelStep(model, optimizers, ContrastiveLoss(cfg.train.label_smoothing), mesh)
    holder: dict = {}
    checkpoints = JaxCheckpoints(
        checkpoints_dir, cfg, step.variable_groups(), lambda: step.write_back(holder["state"])
    )
    resume = checkpoints.restore()
    if init_dir and resume.step == 0:
        trainer._warm_start(cfg, model, init_dir)
    holder["state"] = step.initial_state()
    processes, index = jax.process_count(), jax.process_index()
    batches = train_dataset(
        files,
        tokenizer,
        cfg.model,
        cfg.train,
        cfg.train.batch_size // processes,
        resume.stream_position,
        num_processes=processes,
        process_index=index,
    ).as_numpy_iterator()

    def run_steps(count: int, signalled: StopRequest, agreed: StopRequest) -> tuple:
        host = [next(batches) for _ in range(count)]
        position = max(int(batch.pop(STREAM_POSITION).max()) for batch in host) + 1
        stacked = {key: np.stack([batch[key] for batch in host]) for key in host[0]}
        epoch, index = divmod(position, EPOCH_STRIDE)  # int32s: the index in 16-bit halves
        mine = (epoch, index >> 16, index & 0xFFFF, int(signalled.requested))
        holder["state"], losses, everyone = step.run(holder["state"], step.shard(stacked), mine)
        positions = [e * EPOCH_STRIDE + (high << 16) + low for e, high, low, _ in everyone]
        # The loop stops on `agreed`: every process after the same step (a save synchronises them).
        agreed.requested = any(stop for *_, stop in everyone)
        return losses.addressable_data(0), positions

    loop = trainer._TrainLoop(
        cfg, model, optimizers, checkpoints, tokenizer, resume, lambda: step.temperature(holder["state"])
    )
    agreed = StopRequest()
    with stop_on_sigterm() as signalled:
        history = loop.run(lambda count: run_steps(count, signalled, agreed), on_log, agreed)
    step.write_back(holder["state"])
    if index == 0:
        trainer.write_model_dir(cfg, model, tokenizer, history, model_dir, saved_model=False)
        export_in_tensorflow(model_dir)
    multihost_utils.sync_global_devices("model folder written")
    return trainer.finish_run(cfg, model, history, num_pairs, start, model_dir, resume.step)


def export_in_tensorflow(model_dir: str) -> None:
    """Writes `model_dir/saved_model` from its `model.keras` in a Keras-on-TensorFlow process.

    Raises:
        AlignPipeError: the export failed (its last lines of output in the message).
    """
    environment = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    done = subprocess.run(
        [sys.executable, "-m", "alignpipe.model.export", model_dir],
        env=environment,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise AlignPipeError(f"writing {fs.join(model_dir, SAVED_MODEL_DIR)} failed: {tail}")
    log.info("SavedModel written to %s", fs.join(model_dir, SAVED_MODEL_DIR))
