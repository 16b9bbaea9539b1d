"""Trains and evaluates one model on one recipe-benchmark data set (bench/recipe.sh).

`--model ours` is the project's trainer with the preset and overrides as given. `--model
reference` is the plain reference the tiny preset is measured against: the same trainer, input
pipeline, tiny BERT and loss, but a 0.4M-parameter plain CNN image tower (4 x [conv 3x3,
BatchNorm, ReLU, max-pool 2] + global average pooling + a linear projection), AdamW at 1e-3 with
a 50-step warmup, the log-temperature (init 1.0) on its own Adam at 1e-2, no label smoothing.

Equal training time: with `--budget S`, a short calibration run measures the model's step rate
(the loop alone, after the first logged row), and the real run gets `S x rate` steps so that its
schedule ends on time. Training seconds (the step loop), R@1/5/10 both ways and zero-shot top-1
(when the set has a classification part) are appended as one JSON line to `--out`.

Usage:
  python bench/recipe.py --data /tmp/recipe/stamps --model ours --budget 170 --seed 0 --out r.jsonl
  python bench/recipe.py --data /tmp/recipe/demo --model reference --steps 400 --out r.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import keras

from alignpipe.config import load_config
from alignpipe.evaluation.evaluate import evaluate
from alignpipe.model import dual_encoder
from alignpipe.training import trainer

# The calibration run's rate counts its steps after CALIBRATION_SKIP only: while the first step
# is traced, the input pipeline fills its buffers, and the steps that drain them run faster
# than the steady state a whole run sees.
CALIBRATION_STEPS = 150
CALIBRATION_SKIP = 80


@keras.saving.register_keras_serializable(package="alignpipe_bench")
class PlainConvEncoder(keras.Model):
    """4 x [conv 3x3, BatchNorm, ReLU, max-pool 2], global average pooling, projection, L2 norm."""

    def __init__(self, image_size: int, embed_dim: int, widths=(32, 64, 128, 256), **kwargs):
        images = keras.Input(shape=(image_size, image_size, 3), name="images")
        x = keras.layers.Rescaling(1.0 / 255.0)(images)
        for width in widths:
            x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False)(x)
            x = keras.layers.BatchNormalization()(x)
            x = keras.layers.ReLU()(x)
            x = keras.layers.MaxPooling2D(2)(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        x = keras.layers.Dense(embed_dim)(x)
        super().__init__(inputs=images, outputs=keras.layers.UnitNormalization(axis=-1)(x), **kwargs)
        self.image_size, self.embed_dim, self.widths = image_size, embed_dim, tuple(widths)

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "image_size": self.image_size,
            "embed_dim": self.embed_dim,
            "widths": list(self.widths),
        }


def build_reference(model, train):
    image = PlainConvEncoder(model.image_size, model.embed_dim, name="image_encoder")
    text = dual_encoder.build_text_encoder(model)
    return dual_encoder.DualEncoder(image, text, train.temperature_init, train.temperature_lr_multiplier)


REFERENCE_SETTINGS = {
    "train.optimizer": "adamw",
    "train.learning_rate": 1e-3,
    "train.warmup_steps": 50,
    "train.weight_decay": 1e-4,
    "train.temperature_init": 1.0,
    "train.temperature_lr_multiplier": 10.0,  # Adam on log(temperature) at 10 x 1e-3
    "train.label_smoothing": 0.0,
}


def loop_seconds(history: list[dict], batch_size: int, after_step: int = 1) -> tuple[float, int]:
    """Seconds and steps of the step loop from the logged rows after `after_step`."""
    seconds, steps, previous = 0.0, 0, None
    for row in history:
        if previous is not None and previous >= after_step:
            n = row["step"] - previous
            seconds += n * batch_size / row["examples_per_s"]
            steps += n
        previous = row["step"]
    return seconds, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="a set folder written by bench/recipe_data.py")
    parser.add_argument("--model", choices=("ours", "reference"), required=True)
    parser.add_argument("--budget", type=float, default=0, help="training seconds (calibrates steps)")
    parser.add_argument("--steps", type=int, default=0, help="steps (instead of --budget)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], dest="overrides", metavar="KEY=VALUE")
    parser.add_argument("--label", default="", help="name of this configuration in the output")
    parser.add_argument("--out", required=True, help="JSON lines file to append the result to")
    args = parser.parse_args()
    if bool(args.budget) == bool(args.steps):
        parser.error("give exactly one of --budget and --steps")

    eval_settings = json.load(open(os.path.join(args.data, "eval.json"), encoding="utf-8"))
    overrides = [f"{k}={v}" for k, v in eval_settings.items()]
    if args.model == "reference":
        overrides += [f"{k}={v}" for k, v in REFERENCE_SETTINGS.items()]
        trainer.build_dual_encoder = build_reference
    overrides += [f"train.seed={args.seed}", "train.log_every_steps=10", *args.overrides]
    cfg = load_config("local", "tiny", overrides)
    data_dir = os.path.join(args.data, "train")
    batch = cfg.train.batch_size

    with tempfile.TemporaryDirectory() as tmp:
        steps, rate = args.steps, None
        if args.budget:
            calib = cfg.replace(train__steps=CALIBRATION_STEPS, train__checkpoint_dir=os.path.join(tmp, "c0"))
            history = trainer.train(calib, data_dir, os.path.join(tmp, "calibration")).history
            seconds, n = loop_seconds(history, batch, after_step=CALIBRATION_SKIP)
            rate = n / seconds
            steps = max(int(args.budget * rate), cfg.train.warmup_steps + 1)
        cfg = cfg.replace(train__steps=steps, train__checkpoint_dir=os.path.join(tmp, "c1"))
        started = time.monotonic()
        result = trainer.train(cfg, data_dir, os.path.join(tmp, "model"))
        train_wall = time.monotonic() - started
        # One retrieval set and at most one classification set: their metric names do not clash.
        metrics = {k.rpartition("/")[2]: v for k, v in evaluate(cfg, result.model_dir).metrics.items()}
    seconds, n = loop_seconds(result.history, batch)
    row = {
        "set": os.path.basename(os.path.normpath(args.data)),
        "model": args.model,
        "label": args.label or args.model,
        "seed": args.seed,
        "steps": steps,
        "pairs": result.num_pairs,
        "loop_seconds": round(seconds * steps / max(n, 1), 1),
        "train_wall_seconds": round(train_wall, 1),
        "calibrated_steps_per_s": round(rate, 3) if rate else None,
        "final_temperature": round(result.final_temperature, 4),
        "overrides": args.overrides,
        **{k: round(v, 4) for k, v in sorted(metrics.items())},
    }
    with open(args.out, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), file=sys.stderr)


if __name__ == "__main__":
    main()
