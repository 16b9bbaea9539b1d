"""tf.data input from pair shards."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf

from alignpipe.config import load_config
from alignpipe.errors import InputError
from alignpipe.filtering.funnel import FunnelReport, write_funnel_json
from alignpipe.model.image_preprocessing import center_crop, preprocess_for_eval, resize_shorter_side
from alignpipe.model.tokenizer import AlignTokenizer
from alignpipe.training.input import (
    check_enough_pairs,
    count_pairs,
    pair_files,
    pairs_in,
    text_dataset,
    train_dataset,
)
from tests.training.conftest import COLOURS, encode

CFG = load_config(
    "local", "tiny", ["model.image_size=32", "model.image_resize=36", "model.max_text_tokens=10"]
)


def test_pair_files_and_counts(shards_dir):
    files = pair_files(shards_dir)
    assert [f.rsplit("/", 1)[1] for f in files] == [
        "pairs-00000-of-00002.tfrecord.gz",
        "pairs-00001-of-00002.tfrecord.gz",
    ]
    assert count_pairs(files) == 48
    texts = [t.decode() for t in text_dataset(files).as_numpy_iterator()]
    assert len(texts) == 48 and texts[0].startswith("a red square on the")


@pytest.mark.parametrize("data_dir", ["", "/does/not/exist"])
def test_missing_data_is_an_input_error(data_dir):
    with pytest.raises(InputError, match="no pair shards"):
        pair_files(data_dir)


def test_empty_folder_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no pair shards"):
        pair_files(str(tmp_path))


def test_batches_have_model_shapes_and_ranges(shards_dir):
    files = pair_files(shards_dir)
    tokenizer = AlignTokenizer.from_texts(text_dataset(files), 100, CFG.model.max_text_tokens)
    batch = next(iter(train_dataset(files, tokenizer, CFG.model, CFG.train, batch_size=16)))
    assert batch["images"].shape == (16, 32, 32, 3) and batch["images"].dtype == tf.float32
    assert 0.0 <= float(tf.reduce_min(batch["images"])) and float(tf.reduce_max(batch["images"])) <= 255.0
    assert batch["token_ids"].shape == (16, 10)
    assert (batch["token_ids"].numpy()[:, 0] == tokenizer.cls_id).all()
    assert batch["padding_mask"].dtype == tf.bool


def test_dataset_repeats_past_one_epoch(shards_dir):
    files = pair_files(shards_dir)
    tokenizer = AlignTokenizer.from_texts(text_dataset(files), 100, 10)
    batches = list(train_dataset(files, tokenizer, CFG.model, CFG.train, batch_size=20).take(5))
    assert len(batches) == 5  # 100 examples from 48 pairs


def test_eval_preprocessing_resizes_shorter_side_and_center_crops():
    pixels = np.zeros((40, 60, 3), np.uint8)  # 40 high, 60 wide: red | green | blue thirds
    for third, colour in enumerate(("red", "green", "blue")):
        pixels[:, 20 * third : 20 * third + 20] = COLOURS[colour]
    assert resize_shorter_side(pixels, 36).shape == (36, 54, 3)
    image = preprocess_for_eval(tf.constant(encode(pixels, "png")), 32, 36).numpy()
    assert image.shape == (32, 32, 3)
    # The crop spans original columns ~12..48: red edge, green middle, blue edge.
    for column, colour in ((0, "red"), (16, "green"), (31, "blue")):
        np.testing.assert_allclose(image[16, column], COLOURS[colour], atol=3)


def test_center_crop_of_a_batch():
    images = tf.reshape(tf.range(2 * 6 * 8 * 3, dtype=tf.float32), (2, 6, 8, 3))
    cropped = center_crop(images, 4)
    assert cropped.shape == (2, 4, 4, 3)
    np.testing.assert_array_equal(cropped[:, 0, 0], images[:, 1, 2])


def test_pairs_in_reads_the_filter_funnel_or_counts(shards_dir):
    files = pair_files(shards_dir)
    assert pairs_in(shards_dir, files) == (48, None)
    funnel = FunnelReport.from_outcomes(50, {"kept": 48, "text_too_short": 2})
    write_funnel_json(funnel, os.path.join(shards_dir, "funnel.json"))
    assert pairs_in(shards_dir, files) == (48, funnel)
    with open(os.path.join(shards_dir, "funnel.json"), "w") as f:
        f.write('{"kept_pairs": 1}')  # not a funnel: counted instead
    assert pairs_in(shards_dir, files) == (48, None)


def test_check_enough_pairs_names_what_to_change():
    check_enough_pairs(8, 8, "kept", None)  # one whole batch is enough to start
    with pytest.raises(InputError) as error:
        check_enough_pairs(0, 8, "kept", None)
    assert "at most 0" not in str(error.value) and str(error.value).endswith("To fix: add data")
    nothing_dropped = FunnelReport.from_outcomes(5, {"kept": 5})
    with pytest.raises(InputError) as error:
        check_enough_pairs(5, 8, "kept", nothing_dropped)
    assert str(error.value).endswith(
        "the filter kept 5 of 5 pairs. To fix: lower train.batch_size to at most 5; or add data"
    )
