"""Trains the ALIGN dual encoder on filtered pair shards and writes the model directory.

The model directory (`model_dir`) holds:

| file                  | content                                                      |
|-----------------------|--------------------------------------------------------------|
| model.keras           | the `DualEncoder` (Keras 3 format; `AlignEncoder.load` reads it) |
| vocab.txt             | the WordPiece vocabulary, one token a line                   |
| model_config.json     | the run's whole `Config` as JSON                             |
| saved_model/          | SavedModel: `embed_image` / `embed_text` from bytes / strings (`model.export`) |
| history.json          | the logged rows: step, loss, temperature, learning_rate, examples_per_s |
| training_curves.png   | loss, temperature and learning rate against step             |

Checkpoints go to `train.checkpoint_dir` (by default beside the model folder), every
`train.checkpoint_every_steps` steps, after the last step and on SIGTERM; a rerun with
the same folder resumes from the latest and ends with the same weights and history as
an uninterrupted run (`alignpipe.training.checkpoints`). A rerun of a finished run
restores its last checkpoint and only rewrites the model folder.

With `train.backend=jax` the same run goes through `alignpipe.training.jax_trainer`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from alignpipe import fs
from alignpipe.config import Config
from alignpipe.errors import ConfigError, InputError
from alignpipe.evaluation.curves import plot_training_curves
from alignpipe.model.contrastive_loss import ContrastiveLoss
from alignpipe.model.dual_encoder import DualEncoder, build_dual_encoder
from alignpipe.model.encoder import CURVES_FILE, HISTORY_FILE, VOCAB_FILE, AlignEncoder
from alignpipe.model.tokenizer import AlignTokenizer
from alignpipe.progress import Progress
from alignpipe.training.checkpoints import (
    Preempted,
    ResumePoint,
    StopRequest,
    TrainingCheckpoints,
    checkpoint_dir,
    saved_tokenizer,
    stop_on_sigterm,
)
from alignpipe.training.input import (
    STREAM_POSITION,
    check_enough_pairs,
    pair_files,
    pairs_in,
    text_dataset,
    train_dataset,
)
from alignpipe.training.optimizer import Optimizers, make_optimizers
from alignpipe.training.strategy import dtype_policy, make_strategy, precision_policy

log = logging.getLogger("alignpipe")


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What one training run did.

    Attributes:
        history: the logged rows (see `train`'s `on_log`).
        steps: optimisation steps run.
        num_pairs: pairs in the training data.
        seconds: wall-clock time of the whole call.
        final_loss: the loss of the last logged row.
        final_temperature: the softmax temperature after training.
        model_dir: where the model was written.
        resumed_from_step: the step of the checkpoint the run started from (0: none).
    """

    history: list[dict]
    steps: int
    num_pairs: int
    seconds: float
    final_loss: float
    final_temperature: float
    model_dir: str
    resumed_from_step: int = 0


def finish_run(
    cfg: Config,
    model: DualEncoder,
    history: list[dict],
    num_pairs: int,
    start: float,
    model_dir: str,
    resumed_from: int,
) -> TrainResult:
    """Logs the end of a run (of either backend) and returns its `TrainResult`; `start` is the
    run's `time.monotonic()` at its beginning."""
    seconds = time.monotonic() - start
    log.info("training done in %.0f s; model written to %s", seconds, model_dir)
    return TrainResult(
        history=history,
        steps=cfg.train.steps,
        num_pairs=num_pairs,
        seconds=seconds,
        final_loss=history[-1]["loss"],
        final_temperature=float(model.temperature),
        model_dir=model_dir,
        resumed_from_step=resumed_from,
    )


def train(
    cfg: Config,
    data_dir: str,
    model_dir: str,
    on_log: Callable[[dict], None] | None = None,
    init_dir: str = "",
) -> TrainResult:
    """Trains a dual encoder with ALIGN's contrastive loss, from scratch, from a checkpoint, or
    warm-started from another model.

    Args:
        cfg: the run's configuration (`model.*`, `train.*`).
        data_dir: folder of filtered pair shards (`pairs-*.tfrecord.gz`).
        model_dir: output folder (local path or URI), see the module docstring.
        on_log: called every `train.log_every_steps` steps (and after the first and
            last) with `{"step", "loss", "temperature", "learning_rate",
            "examples_per_s"}`; `loss` is the mean over the steps since the last row.
            A resumed run calls it for the rows after its checkpoint only.
        init_dir: a model folder to warm-start from (`train.init_from`, resolved): its weights
            and vocabulary, with a new optimiser. A checkpoint of this run wins over it.

    Raises:
        InputError: no pair shards, or fewer pairs than one global batch (checked before
            anything is built, from the filter's funnel.json when it is there), or the
            filter's vocab.txt is malformed or larger than `model.vocab_size`.
        ConfigError: `train.batch_size` does not split evenly over the replicas, or the
            checkpoint folder holds a run with another configuration, or `init_dir`'s model
            has another `model.*` configuration.
        Preempted: SIGTERM arrived; a checkpoint of the last step done was saved.
    """
    if cfg.train.backend == "jax":
        from alignpipe.training.jax_trainer import train_on_jax

        return train_on_jax(cfg, data_dir, model_dir, on_log, init_dir)
    start = time.monotonic()
    files = pair_files(data_dir)
    num_pairs, funnel = pairs_in(data_dir, files)
    check_enough_pairs(num_pairs, cfg.train.batch_size, data_dir, funnel)
    log.info("training on %d pairs from %d shards in %s", num_pairs, len(files), data_dir)
    keras.utils.set_random_seed(cfg.train.seed)
    checkpoints_dir = checkpoint_dir(cfg, model_dir)
    tokenizer = _tokenizer(cfg, data_dir, files, checkpoints_dir, init_dir)
    strategy = _strategy(cfg)
    policy = precision_policy(cfg.train.precision, strategy)
    log.info("precision: %s, %d step(s) per call", policy, cfg.train.steps_per_execution)
    with strategy.scope(), dtype_policy(policy):
        model = build_dual_encoder(cfg.model, cfg.train)
        optimizers = make_optimizers(cfg.train, model)
    checkpoints = TrainingCheckpoints(checkpoints_dir, cfg, model, optimizers)
    resume = checkpoints.restore()
    if init_dir and resume.step == 0:
        _warm_start(cfg, model, init_dir)

    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        shard = files[context.input_pipeline_id :: context.num_input_pipelines] or files
        batch = context.get_per_replica_batch_size(cfg.train.batch_size)
        return train_dataset(shard, tokenizer, cfg.model, cfg.train, batch, resume.stream_position)

    batches = iter(strategy.distribute_datasets_from_function(dataset_fn))
    train_step = _train_step_fn(strategy, model, optimizers, ContrastiveLoss(cfg.train.label_smoothing))
    loop = _TrainLoop(cfg, model, optimizers, checkpoints, tokenizer, resume)
    with stop_on_sigterm() as stop:
        history = loop.run(lambda count: train_step(batches, tf.constant(count, tf.int32)), on_log, stop)
    write_model_dir(cfg, model, tokenizer, history, model_dir)
    return finish_run(cfg, model, history, num_pairs, start, model_dir, resume.step)


def _tokenizer(
    cfg: Config, data_dir: str, files: list[str], checkpoints_dir: str, init_dir: str = ""
) -> AlignTokenizer:
    """The vocabulary saved beside the checkpoints when resuming, else the warm start's, else the
    filter's `vocab.txt` beside the shards, else (shards that did not come from the filter) one
    learnt from the alt-texts.

    Raises:
        InputError: the filter's `vocab.txt` has more tokens than `model.vocab_size` or does
            not start with the reserved tokens.
    """
    tokenizer = saved_tokenizer(checkpoints_dir, cfg)
    filter_vocabulary = fs.join(data_dir, VOCAB_FILE)
    if tokenizer is not None:
        source = f"the checkpoint folder {checkpoints_dir}"
    elif init_dir:
        if not fs.exists(fs.join(init_dir, VOCAB_FILE)):
            raise InputError(f"train.init_from: {init_dir!r} is not a model folder (no {VOCAB_FILE})")
        tokenizer = AlignTokenizer.load(fs.join(init_dir, VOCAB_FILE), cfg.model.max_text_tokens)
        source = f"the warm start's {init_dir} (token ids must match its weights)"
    elif fs.exists(filter_vocabulary):
        try:
            tokenizer = AlignTokenizer.load(filter_vocabulary, cfg.model.max_text_tokens)
        except ValueError as e:
            raise InputError(f"{filter_vocabulary}: not a WordPiece vocabulary ({e})") from None
        if len(tokenizer.vocabulary) > cfg.model.vocab_size:
            raise InputError(
                f"{filter_vocabulary} has {len(tokenizer.vocabulary)} tokens, more than "
                f"model.vocab_size={cfg.model.vocab_size}: filter again with this model.vocab_size, "
                "or delete it to learn the vocabulary here"
            )
        source = f"the filter's {filter_vocabulary}"
    else:
        tokenizer = AlignTokenizer.from_texts(
            text_dataset(files), cfg.model.vocab_size, cfg.model.max_text_tokens
        )
        source = f"learnt from the alt-texts (no {VOCAB_FILE} in {data_dir})"
    log.info("WordPiece vocabulary: %d tokens, %s", len(tokenizer.vocabulary), source)
    return tokenizer


def _warm_start(cfg: Config, model: DualEncoder, init_dir: str) -> None:
    """Copies the weights of the model in `init_dir` into `model` (same `model.*` config).

    Raises:
        ConfigError: the two models' `model.*` configurations differ.
        InputError: `init_dir` is not a loadable model folder.
    """
    initial = AlignEncoder.load(init_dir)
    before, now = dataclasses.asdict(initial.config.model), dataclasses.asdict(cfg.model)
    changed = [key for key in now if before.get(key) != now[key]]
    if changed:
        differences = ", ".join(f"model.{k}={before.get(k)!r} there, {now[k]!r} here" for k in changed)
        raise ConfigError(
            f"train.init_from: the model in {init_dir} has another architecture ({differences}); "
            "warm-start with its model.* settings, or train from scratch (train.init_from=)"
        )
    model.set_weights(initial.model.get_weights())
    log.info("warm start: the weights of %s (temperature %.4f)", init_dir, float(model.temperature))


def _strategy(cfg: Config) -> tf.distribute.Strategy:
    strategy = make_strategy(cfg.train.strategy)
    if cfg.train.batch_size % strategy.num_replicas_in_sync:
        raise ConfigError(
            f"train.batch_size={cfg.train.batch_size} must be a multiple of the "
            f"{strategy.num_replicas_in_sync} replicas of train.strategy={cfg.train.strategy!r}"
        )
    return strategy


def _train_step_fn(
    strategy: tf.distribute.Strategy, model: DualEncoder, optimizers: Optimizers, loss_fn: ContrastiveLoss
) -> Callable:
    """A compiled function that runs `count` steps (a tensor: no retracing per count).

    Returns each step's global loss `[count]` and the input stream's position after
    the last batch (one past the furthest record in it; replicas get consecutive
    parts of the stream). Several steps per call (`train.steps_per_execution`) keep
    an accelerator busy between the host's calls, as Keras' `steps_per_execution`.
    """
    variables = optimizers.weight_variables + [optimizers.temperature_variable]

    def replica_step(batch: dict) -> tf.Tensor:
        with tf.GradientTape() as tape:
            outputs = model(batch, training=True)
            image_embeddings = tf.cast(outputs["image_embeddings"], tf.float32)
            text_embeddings = tf.cast(outputs["text_embeddings"], tf.float32)
            loss = loss_fn(image_embeddings, text_embeddings, model.temperature)
        gradients = tape.gradient(loss, variables)
        optimizers.apply(gradients[:-1], gradients[-1])
        return loss

    def one_step(iterator) -> tuple[tf.Tensor, tf.Tensor]:
        batch = next(iterator)
        positions = batch.pop(STREAM_POSITION)
        per_replica_loss = strategy.run(replica_step, args=(batch,))
        loss = strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica_loss, axis=None)
        return loss, tf.reduce_max(strategy.gather(positions, axis=0)) + 1

    @tf.function
    def steps(iterator, count: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        losses = tf.TensorArray(tf.float32, size=count)
        position = tf.constant(0, tf.int64)
        for index in tf.range(count):
            loss, position = one_step(iterator)
            losses = losses.write(index, tf.cast(loss, tf.float32))
        return losses.stack(), position

    return steps


class _TrainLoop:
    """Runs the steps from a `ResumePoint` to `train.steps`: logs rows, saves checkpoints.

    `temperature` reads the current temperature for a row (default: the model's variable).
    """

    def __init__(
        self,
        cfg: Config,
        model: DualEncoder,
        optimizers: Optimizers,
        checkpoints: TrainingCheckpoints,
        tokenizer: AlignTokenizer,
        resume: ResumePoint,
        temperature: Callable[[], float] | None = None,
    ):
        self.cfg, self.model, self.optimizers = cfg, model, optimizers
        self.temperature = temperature or (lambda: float(model.temperature))
        self.checkpoints, self.tokenizer, self.resume = checkpoints, tokenizer, resume
        self.history = list(resume.history)
        self.pending_losses: list = list(resume.pending_losses)  # since the last row
        self.pending_since = (resume.step, time.monotonic())

    def run(
        self,
        run_steps: Callable[[int], tuple],
        on_log: Callable[[dict], None] | None,
        stop: StopRequest,
    ) -> list[dict]:
        """Logs a row after the first step, every `log_every_steps` and the last; saves when due.

        `run_steps(n)` runs n steps in one call: up to `train.steps_per_execution`, and
        never past the next step that logs, saves or ends the run.
        """
        total = self.cfg.train.steps
        if self.resume.step >= total:
            log.info("the checkpoint is at the last step (%d): nothing left to train", total)
        stream_position = tf.constant(self.resume.stream_position, tf.int64)
        step = self.resume.step
        with Progress(total=total - self.resume.step, desc="train", unit="step") as progress:
            while step < total:
                count = self._steps_to_next_stop(step)
                losses, stream_position = run_steps(count)
                step += count
                self.pending_losses.append(losses)
                progress.update(count)
                if step == 1 or step % self.cfg.train.log_every_steps == 0 or step == total:
                    self._log_row(step, on_log)
                if self.checkpoints.due(step) or stop.requested:
                    path = self.checkpoints.save(
                        step, _host_value(stream_position), self.history, self._pending(), self.tokenizer
                    )
                    if stop.requested and step < total:
                        raise Preempted(step, total, path)
        return self.history

    def _steps_to_next_stop(self, step: int) -> int:
        """Steps from `step` to the next one that logs or saves, at most `steps_per_execution`."""
        train = self.cfg.train
        stops = [train.steps, _next_multiple(step, train.log_every_steps)]
        stops.append(_next_multiple(step, train.checkpoint_every_steps))
        if step == 0:
            stops.append(1)
        return min(train.steps_per_execution, min(stops) - step)

    def _pending(self) -> list[float]:
        """The losses of the steps since the last row, one float per step."""
        return [float(loss) for losses in self.pending_losses for loss in np.atleast_1d(np.asarray(losses))]

    def _log_row(self, step: int, on_log: Callable[[dict], None] | None) -> None:
        since_step, since_time = self.pending_since
        now = time.monotonic()
        row = {
            "step": step,
            "loss": float(np.mean(self._pending())),
            "temperature": self.temperature(),
            "learning_rate": float(self.optimizers.schedule(step - 1)),
            "examples_per_s": (step - since_step) * self.cfg.train.batch_size / max(now - since_time, 1e-9),
        }
        self.pending_losses, self.pending_since = [], (step, now)
        self.history.append(row)
        log.info(
            "step %d/%d loss=%.4f temperature=%.4f learning_rate=%.3g examples/s=%.0f",
            step,
            self.cfg.train.steps,
            row["loss"],
            row["temperature"],
            row["learning_rate"],
            row["examples_per_s"],
        )
        if on_log is not None:
            on_log(dict(row))


def _host_value(stream_position):
    """A TF stream position as an int; the JAX backend's list (one per process) as it is."""
    return stream_position if isinstance(stream_position, list) else int(stream_position)


def write_model_dir(
    cfg: Config,
    model: DualEncoder,
    tokenizer: AlignTokenizer,
    history: list[dict],
    model_dir: str,
    saved_model: bool = True,
) -> None:
    AlignEncoder(model, tokenizer, cfg).save(model_dir, saved_model=saved_model)
    fs.write_json(fs.join(model_dir, HISTORY_FILE), history)
    fs.write_bytes(fs.join(model_dir, CURVES_FILE), plot_training_curves(history))


def _next_multiple(step: int, every: int) -> int:
    return (step // every + 1) * every
