"""Training on one accelerator: images/s, step time and device memory of the JAX trainer.

Writes synthetic pair shards (rendered scenes with their captions, `alignpipe.demo.scenes`),
then trains each preset for `--steps` steps with `train.backend=jax` on every local device, in
this process, and prints one JSON line per preset:

    {"preset": "tiny", "devices": "1 x NVIDIA H100 80GB HBM3", "global_batch": 128,
     "images_per_s": ..., "step_ms": ..., "peak_device_gb": ..., "train_s": ...}

`images_per_s` and `step_ms` are the median over the logged rows after the first (compilation
is in the first); `peak_device_gb` is the largest `peak_bytes_in_use` over the devices.

Usage (bench/accelerator_check.sh installs the GPU extras and runs it):
    python bench/accelerator_check.py --steps 300 --pairs 4096 [--preset tiny --preset b0]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time

from alignpipe.training.backend import select_keras_backend

select_keras_backend("jax")  # before anything imports Keras

import jax  # noqa: E402
import tensorflow as tf  # noqa: E402

from alignpipe.config import load_config  # noqa: E402
from alignpipe.data.records import SHARD_SUFFIX, ImageTextPair, shard_prefix  # noqa: E402
from alignpipe.demo.scenes import demo_pairs  # noqa: E402
from alignpipe.training.trainer import train  # noqa: E402

# The tiny preset as the demo trains it, and an EfficientNet-B0-class model at 224 px.
PRESETS = {
    "tiny": [],
    "b0": [
        "model.image_encoder=efficientnet_b0",
        "model.image_width_coefficient=1.0",
        "model.image_depth_coefficient=1.0",
        "model.image_size=224",
        "model.image_resize=256",
        "model.text_layers=4",
        "model.text_hidden_dim=256",
        "model.text_heads=4",
        "model.text_intermediate_dim=1024",
        "model.embed_dim=256",
        "train.batch_size=256",
    ],
}


def write_pairs(directory: str, num_pairs: int, num_shards: int = 8, size: int = 256, seed: int = 0) -> None:
    """`num_pairs` rendered scenes (`size` px JPEGs) with a caption each, as GZIP shards."""
    tf.io.gfile.makedirs(directory)
    paths = [
        f"{shard_prefix(directory)}-{i:05d}-of-{num_shards:05d}{SHARD_SUFFIX}" for i in range(num_shards)
    ]
    writers = [tf.io.TFRecordWriter(p, options="GZIP") for p in paths]
    for k, (data, text) in enumerate(demo_pairs(num_pairs, seed, size, "jpeg")):
        sha256 = hashlib.sha256(data).hexdigest()
        url = f"http://127.0.0.1/{k}.jpg"
        pair = ImageTextPair(data, "jpeg", size, size, sha256, text, url, "http://127.0.0.1/")
        writers[k % num_shards].write(pair.to_example())
    for writer in writers:
        writer.close()


def check(preset: str, data_dir: str, work_dir: str, steps: int) -> dict:
    """Trains `preset` for `steps` steps and measures it."""
    overrides = [
        *PRESETS[preset],
        "train.backend=jax",
        f"train.steps={steps}",
        f"train.log_every_steps={max(steps // 10, 1)}",
        f"train.warmup_steps={max(steps // 10, 1)}",
        f"train.checkpoint_every_steps={steps}",
    ]
    cfg = load_config("local", "tiny", overrides)
    start = time.monotonic()
    result = train(cfg, data_dir, os.path.join(work_dir, preset))
    rates = [row["examples_per_s"] for row in result.history[1:]] or [result.history[-1]["examples_per_s"]]
    images_per_s = statistics.median(rates)
    devices = jax.local_devices()
    peaks = [(d.memory_stats() or {}).get("peak_bytes_in_use", 0) for d in devices]
    return {
        "preset": preset,
        "devices": f"{len(devices)} x {devices[0].device_kind}",
        "global_batch": cfg.train.batch_size,
        "steps": steps,
        "images_per_s": round(images_per_s, 1),
        "step_ms": round(1000 * cfg.train.batch_size / images_per_s, 1),
        "peak_device_gb": round(max(peaks) / 1e9, 2),
        "train_s": round(time.monotonic() - start, 1),
        "final_loss": round(result.final_loss, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--pairs", type=int, default=4096)
    parser.add_argument("--preset", action="append", choices=sorted(PRESETS), dest="presets")
    parser.add_argument("--work-dir", default="")
    args = parser.parse_args()
    work_dir = args.work_dir or tempfile.mkdtemp(prefix="accelerator-check-")
    data_dir = os.path.join(work_dir, "pairs")
    started = time.monotonic()
    write_pairs(data_dir, args.pairs)
    print(f"{args.pairs} pairs written in {time.monotonic() - started:.0f} s", file=sys.stderr)
    for preset in args.presets or list(PRESETS):
        print(json.dumps(check(preset, data_dir, work_dir, args.steps)), flush=True)


if __name__ == "__main__":
    main()
