"""AlignTokenizer: vocabulary learning, packing, round trip, save/load."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from alignpipe.model.tokenizer import RESERVED_TOKENS, AlignTokenizer

TEXTS = [
    "a large red circle on the left",
    "two small blue squares at the top",
    "picture of a green star in the middle",
    "a yellow ring above a purple diamond",
] * 20  # WordPiece learning keeps whole words seen at least ~10 times


@pytest.fixture(scope="module")
def tokenizer() -> AlignTokenizer:
    return AlignTokenizer.from_texts(TEXTS, vocabulary_size=200, sequence_length=12)


def test_vocabulary_starts_with_reserved_tokens_and_holds_words(tokenizer):
    assert tuple(tokenizer.vocabulary[: len(RESERVED_TOKENS)]) == RESERVED_TOKENS
    assert {"red", "circle", "squares", "diamond"} <= set(tokenizer.vocabulary)
    assert len(tokenizer.vocabulary) <= 200


def test_vocabulary_size_is_an_upper_bound():
    small = AlignTokenizer.from_texts(TEXTS, vocabulary_size=30, sequence_length=8)
    assert len(small.vocabulary) == 30


def test_round_trip_lowercases(tokenizer):
    batch = tokenizer(["A Large RED circle on the left", "two small blue squares"])
    assert tokenizer.detokenize(batch["token_ids"]) == [
        "a large red circle on the left",
        "two small blue squares",
    ]


def test_packing_cls_sep_padding_and_masks(tokenizer):
    batch = tokenizer(["a red circle"])
    ids = batch["token_ids"].numpy()[0]
    words = [tokenizer.vocabulary.index(w) for w in ("a", "red", "circle")]
    assert ids.tolist() == [tokenizer.cls_id, *words, tokenizer.sep_id] + [tokenizer.pad_id] * 7
    assert batch["padding_mask"].numpy()[0].tolist() == [True] * 5 + [False] * 7
    assert batch["segment_ids"].numpy().sum() == 0
    assert batch["token_ids"].dtype == tf.int32


def test_long_texts_are_truncated_keeping_sep(tokenizer):
    ids = tokenizer([" ".join(["red"] * 50)])["token_ids"].numpy()[0]
    assert len(ids) == 12 and ids[0] == tokenizer.cls_id and ids[-1] == tokenizer.sep_id


def test_unknown_words_become_unk(tokenizer):
    ids = tokenizer(["red 漢"])["token_ids"].numpy()[0]
    assert tokenizer.vocabulary.index("[UNK]") in ids.tolist()


def test_works_inside_tf_data(tokenizer):
    dataset = tf.data.Dataset.from_tensor_slices(TEXTS[:4]).batch(2).map(tokenizer)
    batch = next(iter(dataset))
    np.testing.assert_array_equal(batch["token_ids"], tokenizer(TEXTS[:2])["token_ids"])


def test_save_and_load_give_the_same_ids(tokenizer, tmp_path):
    path = str(tmp_path / "vocab.txt")
    tokenizer.save(path)
    loaded = AlignTokenizer.load(path, sequence_length=12)
    assert loaded.vocabulary == tokenizer.vocabulary
    np.testing.assert_array_equal(loaded(TEXTS)["token_ids"], tokenizer(TEXTS)["token_ids"])


def test_vocabulary_without_reserved_tokens_is_rejected():
    with pytest.raises(ValueError, match="must start with"):
        AlignTokenizer(["a", "b"], 8)


def test_tokens_holding_line_separators_survive_save_and_load(tmp_path):
    """U+2028 / U+2029 are not whitespace to WordPiece; only "\\n" ends a vocab.txt line."""
    vocabulary = [*RESERVED_TOKENS, "a\u2028b", "c\u2029", "d"]
    path = str(tmp_path / "vocab.txt")
    AlignTokenizer(vocabulary, 8).save(path)
    assert AlignTokenizer.load(path, 8).vocabulary == vocabulary
