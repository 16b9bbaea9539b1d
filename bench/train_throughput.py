"""Training throughput: input pipeline vs step, steps per call, precision, shard compression.

On one folder of filtered pair shards, with the tiny preset (or `--set` overrides):
- input: batches/s of `train_dataset` alone (decode, resize, crop, tokenise), and its ratio
  to the step rate (the input must keep up: >= 3x leaves room for a busier machine);
- step: steps/s of the compiled step on one fixed batch, for `train.steps_per_execution` 1
  and `--per-call`, and for `train.precision` float32 and mixed_bfloat16;
- the trainer end to end (`train()`, input included), steps/s for steps_per_execution 1 and
  `--per-call`;
- shards: read rate of the records (no decoding) from the shards as the filter writes them
  (gzip level 0: the JPEG / PNG payload is not compressed twice) and re-compressed at gzip
  level 6, with both sizes.

Usage: python bench/train_throughput.py SHARDS_DIR [--seconds 10] [--per-call 8] [--out r.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import tensorflow as tf

from alignpipe.config import load_config
from alignpipe.data.records import COMPRESSION
from alignpipe.model.contrastive_loss import ContrastiveLoss
from alignpipe.model.dual_encoder import build_dual_encoder
from alignpipe.model.tokenizer import AlignTokenizer
from alignpipe.training import trainer
from alignpipe.training.input import pair_files, text_dataset, train_dataset
from alignpipe.training.optimizer import make_optimizers
from alignpipe.training.strategy import dtype_policy


def rate(fn, seconds: float, warmup: int = 2) -> float:
    """Calls per second of `fn` over about `seconds`, after `warmup` calls."""
    for _ in range(warmup):
        fn()
    start, calls = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        fn()
        calls += 1
    return calls / (time.perf_counter() - start)


def input_rate(cfg, files, tokenizer, seconds: float) -> float:
    batches = iter(train_dataset(files, tokenizer, cfg.model, cfg.train, cfg.train.batch_size))
    return rate(lambda: next(batches), seconds)


def step_rate(cfg, batch: dict, per_call: int, precision: str, seconds: float) -> float:
    """Steps/s of the trainer's compiled step on a fixed batch (no input pipeline)."""
    strategy = tf.distribute.get_strategy()
    with dtype_policy(precision):
        model = build_dual_encoder(cfg.model, cfg.train)
        optimizers = make_optimizers(cfg.train, model)
    step = trainer._train_step_fn(strategy, model, optimizers, ContrastiveLoss(cfg.train.label_smoothing))
    repeated = iter(tf.data.Dataset.from_tensors(batch).repeat())
    count = tf.constant(per_call, tf.int32)
    return per_call * rate(lambda: step(repeated, count)[0].numpy(), seconds)


def trainer_rate(cfg, data_dir: str, per_call: int, steps: int) -> float:
    """Steps/s of the whole trainer loop (input included), from its logged rows after the first."""
    with tempfile.TemporaryDirectory() as tmp:
        run = cfg.replace(
            train__steps=steps,
            train__steps_per_execution=per_call,
            train__log_every_steps=max(per_call, 20),
            train__checkpoint_every_steps=10 * steps,
            train__checkpoint_dir=os.path.join(tmp, "checkpoints"),
        )
        history = trainer.train(run, data_dir, os.path.join(tmp, "model")).history
    timed = history[2:]  # after the first logged rows: tracing and warm-up
    examples = sum(
        (row["step"] - previous["step"]) * cfg.train.batch_size / row["examples_per_s"]
        for previous, row in zip(history[1:], timed, strict=False)
    )
    return (timed[-1]["step"] - history[1]["step"]) / examples


def record_read(files: list[str], compression: str, seconds: float) -> float:
    """Records/s read (not decoded) from `files`."""
    records = tf.data.TFRecordDataset(files, compression_type=compression).repeat()
    iterator = iter(records.batch(256))
    return 256 * rate(lambda: next(iterator), seconds)


def recompress(files: list[str], folder: str, level: int) -> list[str]:
    out = []
    options = tf.io.TFRecordOptions(compression_type="GZIP", compression_level=level)
    for path in files:
        target = os.path.join(folder, os.path.basename(path))
        with tf.io.TFRecordWriter(target, options) as writer:
            for record in tf.data.TFRecordDataset(path, compression_type=COMPRESSION):
                writer.write(record.numpy())
        out.append(target)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--per-call", type=int, default=8)
    parser.add_argument("--trainer-steps", type=int, default=120)
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    cfg = load_config("local", "tiny", args.overrides)
    files = pair_files(args.data_dir)
    tokenizer = AlignTokenizer.from_texts(
        text_dataset(files), cfg.model.vocab_size, cfg.model.max_text_tokens
    )
    batch = next(iter(train_dataset(files, tokenizer, cfg.model, cfg.train, cfg.train.batch_size)))
    results: dict[str, float] = {"input_batches_per_s": input_rate(cfg, files, tokenizer, args.seconds)}
    for per_call in (1, args.per_call):
        for precision in ("float32", "mixed_bfloat16"):
            if per_call != 1 and precision != "float32":
                continue
            key = f"step_per_s.per_call_{per_call}.{precision}"
            results[key] = step_rate(cfg, batch, per_call, precision, args.seconds)
    results["input_to_step_ratio"] = results["input_batches_per_s"] / results["step_per_s.per_call_1.float32"]
    for per_call in (1, args.per_call):
        results[f"trainer_steps_per_s.per_call_{per_call}"] = trainer_rate(
            cfg, args.data_dir, per_call, args.trainer_steps
        )
    with tempfile.TemporaryDirectory() as tmp:
        level6 = recompress(files, tmp, 6)
        results["shard_mb.level_0"] = sum(os.path.getsize(f) for f in files) / 1e6
        results["shard_mb.level_6"] = sum(os.path.getsize(f) for f in level6) / 1e6
        results["records_per_s.level_0"] = record_read(files, COMPRESSION, args.seconds)
        results["records_per_s.level_6"] = record_read(level6, "GZIP", args.seconds)
    results = {k: round(v, 3) for k, v in results.items()}
    text = json.dumps(results, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
