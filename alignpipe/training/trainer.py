"""Trains the ALIGN dual encoder on filtered pair shards and writes the model directory.

The model directory (`model_dir`) holds:

| file                  | content                                                      |
|-----------------------|--------------------------------------------------------------|
| model.keras           | the `DualEncoder` (Keras 3 format; `AlignEncoder.load` reads it) |
| vocab.txt             | the WordPiece vocabulary, one token a line                   |
| model_config.json     | the run's whole `Config` as JSON                             |
| history.json          | the logged rows: step, loss, temperature, learning_rate, examples_per_s |
| training_curves.png   | loss, temperature and learning rate against step             |
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
from alignpipe.errors import ConfigError
from alignpipe.evaluation.curves import plot_training_curves
from alignpipe.model.contrastive_loss import ContrastiveLoss
from alignpipe.model.dual_encoder import DualEncoder, build_dual_encoder
from alignpipe.model.encoder import CURVES_FILE, HISTORY_FILE, AlignEncoder
from alignpipe.model.tokenizer import AlignTokenizer
from alignpipe.progress import Progress
from alignpipe.training.input import check_enough_pairs, pair_files, pairs_in, text_dataset, train_dataset
from alignpipe.training.optimizer import Optimizers, make_optimizers
from alignpipe.training.strategy import make_strategy

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
    """

    history: list[dict]
    steps: int
    num_pairs: int
    seconds: float
    final_loss: float
    final_temperature: float
    model_dir: str


def train(
    cfg: Config, data_dir: str, model_dir: str, on_log: Callable[[dict], None] | None = None
) -> TrainResult:
    """Trains a dual encoder from scratch with ALIGN's contrastive loss.

    Args:
        cfg: the run's configuration (`model.*`, `train.*`).
        data_dir: folder of filtered pair shards (`pairs-*.tfrecord.gz`).
        model_dir: output folder (local path or URI), see the module docstring.
        on_log: called every `train.log_every_steps` steps (and after the first and
            last) with `{"step", "loss", "temperature", "learning_rate",
            "examples_per_s"}`; `loss` is the mean over the steps since the last row.

    Raises:
        InputError: no pair shards, or fewer pairs than one global batch (checked before
            anything is built, from the filter's funnel.json when it is there).
        ConfigError: `train.batch_size` does not split evenly over the replicas.
    """
    start = time.monotonic()
    files = pair_files(data_dir)
    num_pairs, funnel = pairs_in(data_dir, files)
    check_enough_pairs(num_pairs, cfg.train.batch_size, data_dir, funnel)
    log.info("training on %d pairs from %d shards in %s", num_pairs, len(files), data_dir)
    keras.utils.set_random_seed(cfg.train.seed)
    tokenizer = AlignTokenizer.from_texts(
        text_dataset(files), cfg.model.vocab_size, cfg.model.max_text_tokens
    )
    log.info("WordPiece vocabulary: %d tokens", len(tokenizer.vocabulary))
    strategy = make_strategy(cfg.train.strategy)
    if cfg.train.batch_size % strategy.num_replicas_in_sync:
        raise ConfigError(
            f"train.batch_size={cfg.train.batch_size} must be a multiple of the "
            f"{strategy.num_replicas_in_sync} replicas of train.strategy={cfg.train.strategy!r}"
        )
    with strategy.scope():
        model = build_dual_encoder(cfg.model, cfg.train)
        optimizers = make_optimizers(cfg.train, model)

    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        shard = files[context.input_pipeline_id :: context.num_input_pipelines] or files
        batch = context.get_per_replica_batch_size(cfg.train.batch_size)
        return train_dataset(shard, tokenizer, cfg.model, cfg.train, batch)

    batches = iter(strategy.distribute_datasets_from_function(dataset_fn))
    train_step = _train_step_fn(strategy, model, optimizers, ContrastiveLoss(cfg.train.label_smoothing))
    history = _train_loop(cfg, model, optimizers, lambda: train_step(batches), on_log)
    _write_model_dir(cfg, model, tokenizer, history, model_dir)
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
    )


def _train_step_fn(
    strategy: tf.distribute.Strategy, model: DualEncoder, optimizers: Optimizers, loss_fn: ContrastiveLoss
) -> Callable:
    """A compiled step: each replica's loss share and gradients; returns the global loss."""
    variables = optimizers.weight_variables + [optimizers.temperature_variable]

    def replica_step(batch: dict) -> tf.Tensor:
        with tf.GradientTape() as tape:
            outputs = model(batch, training=True)
            loss = loss_fn(outputs["image_embeddings"], outputs["text_embeddings"], model.temperature)
        gradients = tape.gradient(loss, variables)
        optimizers.apply(gradients[:-1], gradients[-1])
        return loss

    @tf.function
    def step(iterator) -> tf.Tensor:
        per_replica_loss = strategy.run(replica_step, args=(next(iterator),))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica_loss, axis=None)

    return step


def _train_loop(
    cfg: Config,
    model: DualEncoder,
    optimizers: Optimizers,
    run_step: Callable[[], tf.Tensor],
    on_log: Callable[[dict], None] | None,
) -> list[dict]:
    """Runs `train.steps` steps, logging a row after the first, every `log_every_steps`, and the last."""
    history: list[dict] = []
    losses: list[tf.Tensor] = []
    last_time = time.monotonic()
    with Progress(total=cfg.train.steps, desc="train", unit="step") as progress:
        for step in range(1, cfg.train.steps + 1):
            losses.append(run_step())
            progress.update(1)
            if step != 1 and step % cfg.train.log_every_steps and step != cfg.train.steps:
                continue
            now = time.monotonic()
            row = {
                "step": step,
                "loss": float(np.mean([float(loss) for loss in losses])),
                "temperature": float(model.temperature),
                "learning_rate": float(optimizers.schedule(step - 1)),
                "examples_per_s": len(losses) * cfg.train.batch_size / max(now - last_time, 1e-9),
            }
            losses, last_time = [], now
            history.append(row)
            log.info(
                "step %d/%d loss=%.4f temperature=%.4f learning_rate=%.3g examples/s=%.0f",
                step,
                cfg.train.steps,
                row["loss"],
                row["temperature"],
                row["learning_rate"],
                row["examples_per_s"],
            )
            if on_log is not None:
                on_log(dict(row))
    return history


def _write_model_dir(
    cfg: Config, model: DualEncoder, tokenizer: AlignTokenizer, history: list[dict], model_dir: str
) -> None:
    AlignEncoder(model, tokenizer, cfg).save(model_dir)
    fs.write_json(fs.join(model_dir, HISTORY_FILE), history)
    fs.write_bytes(fs.join(model_dir, CURVES_FILE), plot_training_curves(history))
