"""Training checkpoints of the JAX backend: the replicated state as one `.npz`, resumable.

The checkpoint folder holds what `alignpipe.training.checkpoints` describes (`vocab.txt`,
`config.json`, the last `train.keep_checkpoints` checkpoints), with each checkpoint
`ckpt-<step>.npz`: the model's trainable and non-trainable variables (BatchNorm
statistics, dropout seed states), both optimisers' variables (iterations, slots), and
a JSON record of the step, every process's input-stream position and the training log.
`checkpoint.json` names the newest; it is written after the `.npz`, so a process killed
mid-save leaves the previous checkpoint in force.

Why not orbax-checkpoint: data-parallel training replicates every variable, so process
0 holds the whole state and one `.npz` through the project's `fs` layer (local or
`gs://`) is all a checkpoint needs, with no further dependency; orbax pays once
variables are sharded over devices (FSDP), which this trainer does not do.
"""

from __future__ import annotations

import io
import json
import logging

import jax
import numpy as np
from jax.experimental import multihost_utils

from alignpipe import fs
from alignpipe.config import Config
from alignpipe.model.encoder import VOCAB_FILE
from alignpipe.model.tokenizer import AlignTokenizer
from alignpipe.training.checkpoints import CONFIG_FILE, JAX_INDEX_FILE, ResumePoint

log = logging.getLogger("alignpipe")

LATEST_FILE = JAX_INDEX_FILE
_GROUPS = ("trainable", "non_trainable", "weights_optimizer", "temperature_optimizer")


def has_jax_checkpoint(directory: str) -> bool:
    """Whether `directory` holds a checkpoint written by `JaxCheckpoints`."""
    return fs.exists(fs.join(directory, LATEST_FILE))


class JaxCheckpoints:
    """The checkpoints of one JAX run in one folder: restore the latest, save, prune.

    Every process calls `restore` and `save` (they synchronise); process 0 writes.

    Args:
        directory: the checkpoint folder (local path or URI).
        cfg: the run's configuration (`train.checkpoint_every_steps`, `train.keep_checkpoints`).
        variables: the Keras variables of each state group (`_GROUPS`), in `TrainState` order.
        write_back: called before a save: copies the training state into `variables`.
    """

    def __init__(self, directory: str, cfg: Config, variables: dict[str, list], write_back):
        self.directory, self.cfg = directory, cfg
        self.variables, self.write_back = variables, write_back
        self._run_files_written = False

    def restore(self) -> ResumePoint:
        """Assigns the newest checkpoint to the variables, if there is one.

        `stream_position` is this process's position; a run resumed with another number
        of processes restarts every process from the smallest saved position.
        """
        if not has_jax_checkpoint(self.directory):
            return ResumePoint()
        latest = fs.read_json(fs.join(self.directory, LATEST_FILE))
        path = fs.join(self.directory, latest["checkpoints"][-1])
        with np.load(io.BytesIO(fs.read_bytes(path)), allow_pickle=False) as arrays:
            for group in _GROUPS:
                for i, variable in enumerate(self.variables[group]):
                    variable.assign(arrays[f"{group}/{i}"])
            record = json.loads(str(arrays["record"]))
        positions = record["stream_positions"]
        if len(positions) == jax.process_count():
            position = positions[jax.process_index()]
        else:
            position = min(positions)
            log.warning("%d processes wrote %s, %d resume it", len(positions), path, jax.process_count())
        log.info("resuming from %s: step %d/%d", path, record["step"], self.cfg.train.steps)
        return ResumePoint(record["step"], position, record["history"], record["pending_losses"], path)

    def due(self, step: int) -> bool:
        """Whether `step` is a save step: every `train.checkpoint_every_steps`, and the last."""
        return step % self.cfg.train.checkpoint_every_steps == 0 or step == self.cfg.train.steps

    def save(
        self,
        step: int,
        stream_positions: list[int],
        history: list[dict],
        pending_losses: list[float],
        tokenizer: AlignTokenizer,
    ) -> str:
        """Saves the state after `step` steps (every process's stream position) and prunes."""
        self.write_back()
        name = f"ckpt-{step}.npz"
        if jax.process_index() == 0:
            self._write(name, step, stream_positions, history, pending_losses, tokenizer)
        multihost_utils.sync_global_devices(f"checkpoint {step}")
        path = fs.join(self.directory, name)
        log.info("checkpoint at step %d/%d: %s", step, self.cfg.train.steps, path)
        return path

    def _write(self, name, step, stream_positions, history, pending_losses, tokenizer) -> None:
        if not self._run_files_written:
            fs.makedirs(self.directory)
            tokenizer.save(fs.join(self.directory, VOCAB_FILE))
            fs.write_text(fs.join(self.directory, CONFIG_FILE), self.cfg.to_json())
            self._run_files_written = True
        record = {
            "step": step,
            "stream_positions": [int(p) for p in stream_positions],
            "history": history,
            "pending_losses": pending_losses,
        }
        arrays = {"record": np.asarray(json.dumps(record))}
        for group in _GROUPS:
            for i, variable in enumerate(self.variables[group]):
                arrays[f"{group}/{i}"] = np.asarray(variable.value)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        fs.write_bytes(fs.join(self.directory, name), buffer.getvalue())
        latest_path = fs.join(self.directory, LATEST_FILE)
        kept = fs.read_json(latest_path)["checkpoints"] if fs.exists(latest_path) else []
        kept = [k for k in kept if k != name] + [name]
        keep = self.cfg.train.keep_checkpoints
        fs.write_json(latest_path, {"checkpoints": kept[-keep:]})
        fs.delete([fs.join(self.directory, old) for old in kept[:-keep]])
