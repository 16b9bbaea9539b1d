"""Training checkpoints: save every N steps and on SIGTERM, resume from the latest.

A checkpoint folder (`train.checkpoint_dir`, local or `gs://`; by default
`<model_dir>-checkpoints`, beside the model folder rather than in it, so that
registering the model does not copy optimiser state) holds:

| file                          | content                                                   |
|-------------------------------|-----------------------------------------------------------|
| ckpt-<step>.index, .data-*    | one `tf.train.Checkpoint`; the last `train.keep_checkpoints` |
| checkpoint                    | `tf.train.CheckpointManager`'s list of them               |
| vocab.txt                     | the WordPiece vocabulary, reused on resume (not rebuilt)  |
| config.json                   | the `Config` of the run that wrote them                   |

A checkpoint holds the `DualEncoder` (tower weights, BatchNorm statistics, the
temperature parameter, and the dropout layers' seed-generator states, which the
object graph of a Keras 3 model misses and which are therefore listed
explicitly), both optimisers of `Optimizers` (`iterations`, which drives the
learning-rate schedule, and every slot), the step, the input-stream position
(`alignpipe.training.input.STREAM_POSITION`: the data continues where it
stopped) and the training log (the history rows and the losses since the last
row), so that an interrupted and resumed run equals an uninterrupted one.

Why a stream position and not the `tf.data` iterator: an iterator checkpoint stores
its buffers, and measured with the `tiny` preset (4096-record shuffle buffer) on
5,408 scraped pairs (300 MB of shards) it was 237 MB and took 4.3 s to save, against
9 MB for the model and both optimisers; the iterator of
`distribute_datasets_from_function` is a `DistributedIterator` under `mirrored` and
`tpu`, which `tf.train.Checkpoint` cannot track (tensorflow/tensorflow#56372); and
with stateful random crops in a parallel map the batches were not reproducible
anyway. `train_dataset` is instead a function of the seed and a position: a resumed
run rebuilds it from the saved position, reading (not decoding) at most one epoch of
records to get there (about 1 s for those 5,408 records). See docs/training.md.

Preemption: Vertex AI sends SIGTERM before it stops a worker. `stop_on_sigterm`
turns the signal into a request that the training loop honours at the next step
boundary: it saves a checkpoint and raises `Preempted`; `trainer.task` exits with
status 143 (128 + SIGTERM), Vertex AI restarts the worker, and the rerun resumes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import signal
import threading
from collections.abc import Iterator

import tensorflow as tf

from alignpipe import fs
from alignpipe.config import Config
from alignpipe.errors import AlignPipeError, ConfigError, InputError
from alignpipe.model.dual_encoder import DualEncoder
from alignpipe.model.encoder import VOCAB_FILE
from alignpipe.model.tokenizer import AlignTokenizer
from alignpipe.training.optimizer import Optimizers

log = logging.getLogger("alignpipe")

CONFIG_FILE = "config.json"
# The index of the JAX backend's checkpoints (`alignpipe.training.jax_checkpoints`).
JAX_INDEX_FILE = "checkpoint.json"

# Keys that may differ between a checkpoint's run and the run that resumes it: they
# change how often things are logged or saved, or where, or on which devices and in which
# precision the same steps run, not what is trained.
RESUMABLE_CHANGES = frozenset(
    {
        "train.log_every_steps",
        "train.checkpoint_dir",
        "train.checkpoint_every_steps",
        "train.keep_checkpoints",
        "train.strategy",
        "train.precision",
        "train.steps_per_execution",
    }
)


class Preempted(AlignPipeError):
    """Training stopped on SIGTERM after saving a checkpoint; a rerun resumes from it.

    Attributes:
        step: the last step done (and saved).
        total_steps: `train.steps`.
        checkpoint: the path of the checkpoint saved.
    """

    def __init__(self, step: int, total_steps: int, checkpoint: str):
        super().__init__(
            f"training stopped by SIGTERM after step {step}/{total_steps}; checkpoint saved to "
            f"{checkpoint}; rerun with the same train.checkpoint_dir to resume"
        )
        self.step, self.total_steps, self.checkpoint = step, total_steps, checkpoint

    def __reduce__(self):  # picklable, e.g. across a process pool
        return Preempted, (self.step, self.total_steps, self.checkpoint)


def checkpoint_dir(cfg: Config, model_dir: str) -> str:
    """`train.checkpoint_dir`, or `<model_dir>-checkpoints` when it is empty."""
    return cfg.train.checkpoint_dir or model_dir.rstrip("/") + "-checkpoints"


@dataclasses.dataclass(frozen=True)
class ResumePoint:
    """Where a run starts: step 0, or what the latest checkpoint holds.

    Attributes:
        step: optimisation steps already done.
        stream_position: the input stream's position after those steps.
        history: the history rows logged so far.
        pending_losses: the losses of the steps after the last row.
        checkpoint: the checkpoint restored, "" at step 0.
    """

    step: int = 0
    stream_position: int = 0
    history: list[dict] = dataclasses.field(default_factory=list)
    pending_losses: list[float] = dataclasses.field(default_factory=list)
    checkpoint: str = ""


class TrainingCheckpoints:
    """The checkpoints of one run in one folder: restore the latest, save, prune.

    Args:
        directory: the checkpoint folder (local path or URI).
        cfg: the run's configuration (`train.checkpoint_every_steps`,
            `train.keep_checkpoints`, `train.steps`).
        model: the dual encoder being trained.
        optimizers: its optimisers, built (slots created).

    Example:
    ```python
    checkpoints = TrainingCheckpoints(checkpoint_dir(cfg, model_dir), cfg, model, optimizers)
    start = checkpoints.restore()  # ResumePoint(step=0) when the folder has none
    ...
    if checkpoints.due(step):
        checkpoints.save(step, stream_position, history, pending_losses, tokenizer)
    ```
    """

    def __init__(self, directory: str, cfg: Config, model: DualEncoder, optimizers: Optimizers):
        self.directory = directory
        self.cfg = cfg
        self._step = tf.Variable(0, dtype=tf.int64, trainable=False)
        self._stream_position = tf.Variable(0, dtype=tf.int64, trainable=False)
        self._training_log = tf.Variable("", dtype=tf.string, trainable=False)
        tracked = dict(
            model=model, weights_optimizer=optimizers.weights, temperature_optimizer=optimizers.temperature
        )
        variables = model.variables + optimizers.weights.variables + optimizers.temperature.variables
        self._checkpoint = tf.train.Checkpoint(
            **tracked,
            # Keras 3's SeedGenerator (the dropout layers' random state) is not trackable, so
            # the object graph misses its variable; these are listed in `variables` order.
            untracked_variables=_untracked(tf.train.Checkpoint(**tracked), variables),
            step=self._step,
            stream_position=self._stream_position,
            training_log=self._training_log,
        )
        self._manager = tf.train.CheckpointManager(
            self._checkpoint, directory, max_to_keep=cfg.train.keep_checkpoints, checkpoint_name="ckpt"
        )
        self._run_files_written = False

    @property
    def latest(self) -> str | None:
        """The path prefix of the newest checkpoint, None when there is none."""
        return self._manager.latest_checkpoint

    @property
    def all(self) -> list[str]:
        """The path prefixes of the checkpoints kept, oldest first."""
        return list(self._manager.checkpoints)

    def restore(self) -> ResumePoint:
        """Restores the newest checkpoint into the model and optimisers, if there is one."""
        path = self.latest
        if path is None:
            return ResumePoint()
        self._checkpoint.restore(path).assert_existing_objects_matched()
        training_log = json.loads(self._training_log.numpy().decode("utf-8"))
        resume = ResumePoint(
            step=int(self._step.numpy()),
            stream_position=int(self._stream_position.numpy()),
            history=training_log["history"],
            pending_losses=training_log["pending_losses"],
            checkpoint=path,
        )
        log.info("resuming from %s: step %d/%d", path, resume.step, self.cfg.train.steps)
        return resume

    def due(self, step: int) -> bool:
        """Whether `step` is a save step: every `train.checkpoint_every_steps`, and the last."""
        return step % self.cfg.train.checkpoint_every_steps == 0 or step == self.cfg.train.steps

    def save(
        self,
        step: int,
        stream_position: int,
        history: list[dict],
        pending_losses: list[float],
        tokenizer: AlignTokenizer,
    ) -> str:
        """Saves a checkpoint after `step` steps and prunes the oldest; returns its path.

        The first save of a process (re)writes `vocab.txt` and `config.json` first,
        so that no checkpoint is ever without the vocabulary it was trained with.
        """
        if not self._run_files_written:
            fs.makedirs(self.directory)
            tokenizer.save(fs.join(self.directory, VOCAB_FILE))
            fs.write_text(fs.join(self.directory, CONFIG_FILE), self.cfg.to_json())
            self._run_files_written = True
        self._step.assign(step)
        self._stream_position.assign(stream_position)
        self._training_log.assign(json.dumps({"history": history, "pending_losses": pending_losses}))
        path = self._manager.save(checkpoint_number=step)
        log.info("checkpoint at step %d/%d: %s", step, self.cfg.train.steps, path)
        return path


def _untracked(checkpoint: tf.train.Checkpoint, variables: list) -> list[tf.Variable]:
    """The `variables` (Keras 3 variables) that `checkpoint`'s object graph does not reach."""
    reached = {id(trackable) for trackable in tf.train.TrackableView(checkpoint).descendants()}
    return [v.value for v in variables if id(v) not in reached and id(v.value) not in reached]


def saved_tokenizer(directory: str, cfg: Config) -> AlignTokenizer | None:
    """The vocabulary of the run whose checkpoints are in `directory`, None without checkpoints.

    Raises:
        ConfigError: the checkpoints were written with a different model or training
            configuration (keys other than `RESUMABLE_CHANGES`).
        InputError: there are checkpoints but no `vocab.txt` or `config.json` beside them.
    """
    if tf.train.latest_checkpoint(directory) is None and not fs.exists(fs.join(directory, JAX_INDEX_FILE)):
        return None
    paths = {name: fs.join(directory, name) for name in (VOCAB_FILE, CONFIG_FILE)}
    for name, path in paths.items():
        if not fs.exists(path):
            raise InputError(f"checkpoint folder {directory!r} has checkpoints but no {name}")
    _check_same_run(Config.from_json(fs.read_text(paths[CONFIG_FILE])), cfg, directory)
    return AlignTokenizer.load(paths[VOCAB_FILE], cfg.model.max_text_tokens)


def _check_same_run(saved: Config, cfg: Config, directory: str) -> None:
    before, now = saved.flat(), cfg.flat()
    changed = [
        key
        for key in sorted(now)
        if key.startswith(("model.", "train.")) and key not in RESUMABLE_CHANGES and before[key] != now[key]
    ]
    if changed:
        differences = ", ".join(f"{key}={before[key]!r} there, {now[key]!r} now" for key in changed)
        raise ConfigError(
            f"checkpoint folder {directory!r} holds a run with another configuration ({differences}); "
            "resume with the same values, or set train.checkpoint_dir to a new folder"
        )


@dataclasses.dataclass
class StopRequest:
    """Set by `stop_on_sigterm`'s handler; the training loop reads it at step boundaries."""

    requested: bool = False


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[StopRequest]:
    """Turns SIGTERM into a `StopRequest` while the block runs, then restores the old handler.

    Signal handlers can only be installed from the main thread; elsewhere (a thread
    pool, some notebook kernels) SIGTERM keeps its previous meaning.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        log.warning("not in the main thread: SIGTERM will not save a checkpoint")
        yield request
        return

    def handle(signum, frame) -> None:
        request.requested = True

    previous = signal.signal(signal.SIGTERM, handle)
    try:
        yield request
    finally:
        signal.signal(signal.SIGTERM, previous)
