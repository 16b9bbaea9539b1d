"""Synthetic pair shards: coloured squares whose captions name colour and side."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from alignpipe.data.records import SHARD_SUFFIX, ImageTextPair, shard_prefix

# The model of the `tiny` preset shrunk to test size; tests add what they need.
SMALL_MODEL = [
    "model.image_size=32",
    "model.image_resize=36",
    "model.text_layers=1",
    "model.text_hidden_dim=16",
    "model.text_heads=2",
    "model.text_intermediate_dim=32",
    "model.embed_dim=16",
]

# Two steps of that model on a small vocabulary: runs that check what training reads and writes.
SMALL_RUN = [
    *SMALL_MODEL,
    "model.max_text_tokens=10",
    "model.vocab_size=80",
    "train.batch_size=8",
    "train.steps=2",
    "train.warmup_steps=1",
    "train.log_every_steps=1",
    "train.shuffle_buffer=16",
]

COLOURS = {"red": (220, 30, 30), "green": (30, 160, 50), "blue": (30, 70, 230), "yellow": (245, 225, 30)}
FORMATS = ("png", "jpeg", "gif", "webp", "bmp")


def square_image(colour: str, side: str, size: tuple[int, int]) -> np.ndarray:
    width, height = size
    pixels = np.full((height, width, 3), 128, np.uint8)
    left = 2 if side == "left" else width // 2
    pixels[height // 4 : 3 * height // 4, left : left + width // 2 - 2] = COLOURS[colour]
    return pixels


def encode(pixels: np.ndarray, image_format: str) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=image_format.upper())
    return out.getvalue()


def write_shards(directory: str, num_pairs: int, num_shards: int = 2, seed: int = 0) -> list[str]:
    """Writes `num_pairs` pairs (every image format, sizes 40..60 px) as GZIP shards."""
    rng = np.random.default_rng(seed)
    tf.io.gfile.makedirs(directory)
    paths = [
        f"{shard_prefix(directory)}-{i:05d}-of-{num_shards:05d}{SHARD_SUFFIX}" for i in range(num_shards)
    ]
    writers = [tf.io.TFRecordWriter(p, options="GZIP") for p in paths]
    for k in range(num_pairs):
        colour, side = list(COLOURS)[k % 4], ("left", "right")[int(rng.integers(2))]
        size = (int(rng.integers(40, 61)), int(rng.integers(40, 61)))
        image_format = FORMATS[k % len(FORMATS)]
        data = encode(square_image(colour, side, size), image_format)
        pair = ImageTextPair(
            data,
            image_format,
            size[0],
            size[1],
            hashlib.sha256(data).hexdigest(),
            f"a {colour} square on the {side}",
            f"http://example.com/{k}.{image_format}",
            "http://example.com/",
        )
        writers[k % num_shards].write(pair.to_example())
    for writer in writers:
        writer.close()
    return paths


@pytest.fixture
def shards_dir(tmp_path) -> str:
    directory = str(tmp_path / "pairs")
    write_shards(directory, num_pairs=48)
    return directory
