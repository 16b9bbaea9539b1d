"""A small exported model and kept pair shards for the index tests."""

from __future__ import annotations

import hashlib
import os

import pytest

from alignpipe.config import load_config
from alignpipe.data.records import SHARD_SUFFIX, ImageTextPair, TFRecordWriter, shard_prefix
from tests.training.conftest import COLOURS, SMALL_MODEL, encode, square_image

SMALL = [*SMALL_MODEL, "model.max_text_tokens=10", "model.vocab_size=80", "index.image_batch_size=4"]
SIDES = ("left", "right")


def index_config(*more: str):
    return load_config("local", "tiny", [*SMALL, *more])


def save_model(path: str, seed: int) -> str:
    """An untrained model folder (SavedModel included) whose weights depend on `seed`."""
    import keras

    from alignpipe.model.dual_encoder import build_dual_encoder
    from alignpipe.model.encoder import AlignEncoder
    from alignpipe.model.tokenizer import AlignTokenizer

    cfg = index_config()
    keras.utils.set_random_seed(seed)
    texts = [f"a {c} square on the {s}" for c in COLOURS for s in SIDES] * 10
    tokenizer = AlignTokenizer.from_texts(texts, cfg.model.vocab_size, cfg.model.max_text_tokens)
    AlignEncoder(build_dual_encoder(cfg.model, cfg.train), tokenizer, cfg).save(path)
    return path


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> str:
    return save_model(str(tmp_path_factory.mktemp("model")), seed=0)


def square_pairs(sizes: list[int], texts_per_image: int = 2) -> list[ImageTextPair]:
    """Pairs of one square image per size (its own sha256) with `texts_per_image` alt-texts each."""
    pairs = []
    for n, size in enumerate(sizes):
        colour, side = list(COLOURS)[n % 4], SIDES[(n // 4) % 2]
        data = encode(square_image(colour, side, (size, size + 3)), "png")
        for t in range(texts_per_image):
            text = f"a {colour} square on the {side}" if t == 0 else f"{colour} block {size} {t}"
            pairs.append(
                ImageTextPair(
                    data,
                    "png",
                    size,
                    size + 3,
                    hashlib.sha256(data).hexdigest(),
                    text,
                    f"http://127.0.0.1:1/img/{size}.png",
                    f"http://127.0.0.1:1/page/{size}-{t}.html",
                )
            )
    return pairs


def write_pair_shard(directory: str, number: int, pairs: list[ImageTextPair]) -> str:
    os.makedirs(directory, exist_ok=True)
    path = f"{shard_prefix(directory)}-{number:05d}-of-00010{SHARD_SUFFIX}"
    with open(path, "wb") as f:
        writer = TFRecordWriter(f)
        for pair in pairs:
            writer.write(pair.to_example())
        writer.close()
    return path
