"""The rules on a pandas frame: against drop_reason on PairFacts; the Beam metadata filter against them."""

import dataclasses
import json
import random
from collections import Counter

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from alignpipe.config import FilterConfig, load_config
from alignpipe.filtering.facts import PairMeta
from alignpipe.filtering.frame_rules import (
    in_memory_drop_reasons,
    in_memory_funnel,
    pairs_frame,
    read_metadata,
    vocabulary_mask,
)
from alignpipe.filtering.funnel import FunnelReport
from alignpipe.filtering.pipeline import run_filter_metadata
from alignpipe.filtering.rules import (
    REASONS,
    PairFacts,
    UnsafeWordList,
    alt_unigrams_and_bigrams,
    drop_reason,
    normalise_alt_text,
)
from alignpipe.filtering.safety import load_unsafe_words
from alignpipe.filtering.vocabulary import corpus_vocabulary, min_word_count
from alignpipe.imaging.phash import PHashIndex
from bench.filter_corpus import generate, write

UNSAFE = 0x0F0F_0F0F_0F0F_0F0F
EVAL = 0xF0F0_F0F0_F0F0_F0F0  # top bit set: stored as a negative int64 in parquet
SIX_BITS, SEVEN_BITS = 0b11_1111, 0b111_1111
UNSAFE_WORDS = UnsafeWordList(frozenset({("forbidden", "word")}))
HAND_CFG = dataclasses.replace(
    FilterConfig(),
    min_image_short_side=40,
    max_aspect_ratio=3.0,
    max_alts_per_image=3,
    max_images_per_alt=2,
    min_alt_words=3,
    max_alt_words=8,
    rare_token_min_word_share=0.05,  # of the 47 pairs below: a word needs 3 occurrences
    nsfw_image_scorer="tests.no_such_scorer:score",  # on; the scores are the metadata's
    nsfw_image_threshold=0.5,
)
NSFW_SCORES = {"n1": 0.5, "n2": 0.49, "s1": 0.9}  # image -> score; 0 for the others

# (image, text, width, height, phash, expected reason); an image's name is its SHA-256 here.
HAND_ROWS = [
    ("a1", "a red circle on the left", 64, 64, 1, None),
    ("a2", "a red circle on the left", 64, 64, 2, None),  # 2 images: the most allowed
    ("b1", "a blue square on the right", 64, 64, 3, None),
    ("b2", "A blue square, on the RIGHT!", 64, 64, 4, None),  # the same normalised text
    ("c1", "a red square on the left", 41, 100, 5, None),  # short side 41 > 40
    ("c2", "a red square on the left", 122, 41, 6, None),  # 122 / 41 < 3
    ("d1", "a blue circle on the right", 40, 100, 7, "image_too_small"),  # 40 <= 40
    ("d2", "a blue circle on the right", 41, 123, 8, "image_aspect_ratio_too_large"),  # 123 / 41 = 3
    ("u", "a red circle on the right", 0, 0, None, "image_undecodable"),
    ("s1", "a blue square on the left", 64, 64, UNSAFE ^ SIX_BITS, "image_unsafe"),  # and NSFW
    ("s2", "a blue square on the left", 64, 64, UNSAFE ^ SEVEN_BITS, None),
    ("n1", "the red square on the left", 64, 64, 29, "image_nsfw"),  # score 0.5 >= 0.5
    ("n2", "the red square on the left", 64, 64, 30, None),
    ("e1", "a red circle on the right", 64, 64, EVAL ^ SIX_BITS, "image_eval_duplicate"),
    ("e2", "a red square on the right", 64, 64, EVAL ^ SEVEN_BITS, None),
    ("e3", "a red square on the right", 64, 64, EVAL, "image_eval_duplicate"),
    ("m4", "a red circle", 64, 64, 9, "image_too_many_alts"),  # 4 distinct alt-texts
    ("m4", "a blue circle", 64, 64, 9, "image_too_many_alts"),
    ("m4", "a red square", 64, 64, 9, "image_too_many_alts"),
    ("m4", "a blue square", 64, 64, 9, "image_too_many_alts"),
    ("m3", "the red circle", 64, 64, 10, None),  # 3 distinct alt-texts in 4 pairs
    ("m3", "The Red Circle!", 64, 64, 10, None),
    ("m3", "the blue circle", 64, 64, 10, None),
    ("m3", "the red square", 64, 64, 10, None),
    ("t1", "red circle", 64, 64, 11, "text_too_short"),
    ("t2", "a red circle on the left and the right", 64, 64, 12, "text_too_long"),  # 9 words
    ("t3", "a red circle on the left and right", 64, 64, 13, None),  # 8 words
    ("t4", "a red circle on the left and right", 64, 64, 14, None),
    ("h1", "a blue circle on the left", 64, 64, 15, "text_shared_by_too_many_images"),  # 3 images
    ("h2", "a blue circle on the left", 64, 64, 16, "text_shared_by_too_many_images"),
    ("h3", "A BLUE circle on the left.", 64, 64, 17, "text_shared_by_too_many_images"),
    ("r1", "a red zyzzyva on the left", 64, 64, 18, "text_rare_token"),  # "zyzzyva" once
    ("r2", "a wombat on the left", 64, 64, 31, "text_rare_token"),  # "wombat" twice
    ("r3", "a wombat on the left", 64, 64, 32, "text_rare_token"),
    ("q1", "a quokka on the left", 64, 64, 33, None),  # "quokka" 3 times: just enough
    ("q2", "a quokka on the left", 64, 64, 34, None),
    ("q3", "the quokka on the right", 64, 64, 35, None),
    ("f1", "a forbidden word on the left", 64, 64, 19, "text_unsafe"),
    ("f2", "a word forbidden on the left", 64, 64, 20, None),  # not the listed phrase
    ("f3", "a word forbidden on the left", 64, 64, 21, None),
    ("k1", "the blue square on the right", 64, 64, 22, None),
    ("k2", "the blue square on the right", 64, 64, 23, None),
    ("k3", "a red circle and the blue square", 64, 64, 24, None),
    ("k4", "a red circle and the blue square", 64, 64, 25, None),
    ("k5", "the left and the right", 64, 64, 26, None),
    ("k6", "the left and the right", 64, 64, 27, None),
    ("k7", "blue red left right square", 64, 64, 28, None),
]


def _metas(rows) -> list[PairMeta]:
    return [
        PairMeta("hand", i, *row[:5], nsfw_score=NSFW_SCORES.get(row[0], 0.0)) for i, row in enumerate(rows)
    ]


def _facts(metas: list[PairMeta], cfg: FilterConfig) -> list[PairFacts]:
    """Each pair's PairFacts, counted with plain sets and a Counter over the raw corpus."""
    alts, images = {}, {}
    for meta in metas:
        alts.setdefault(meta.sha256, set()).add(normalise_alt_text(meta.text))
        images.setdefault(normalise_alt_text(meta.text), set()).add(meta.sha256)
    counts = Counter(token for meta in metas for token in alt_unigrams_and_bigrams(meta.text))
    least = min_word_count(len(metas), cfg.rare_token_min_word_share)
    vocabulary = corpus_vocabulary(counts, k=cfg.rare_token_vocab_size, min_count=least)
    return [
        PairFacts(
            meta.phash is not None,
            meta.width,
            meta.height,
            meta.phash,
            meta.text,
            len(alts[meta.sha256]),
            len(images[normalise_alt_text(meta.text)]),
            frozenset(t for t in alt_unigrams_and_bigrams(meta.text) if t in vocabulary),
            meta.nsfw_score,
        )
        for meta in metas
    ]


def test_hand_made_corpus_fires_every_metadata_rule_at_its_boundaries():
    metas = _metas(HAND_ROWS)
    expected = [row[-1] for row in HAND_ROWS]
    assert set(REASONS) <= set(expected)
    assert min_word_count(len(metas), HAND_CFG.rare_token_min_word_share) == 3
    hashes = {"eval_hashes": [EVAL], "unsafe_hashes": [UNSAFE], "unsafe_words": UNSAFE_WORDS}

    facts = _facts(metas, HAND_CFG)
    by_image = {meta.sha256: fact for meta, fact in zip(metas, facts, strict=True)}
    assert (by_image["m4"].alts_per_image, by_image["m3"].alts_per_image) == (4, 3)
    assert (by_image["h3"].images_per_alt, by_image["b2"].images_per_alt) == (3, 2)
    assert [drop_reason(f, HAND_CFG, **hashes) for f in facts] == expected
    assert in_memory_drop_reasons(metas, HAND_CFG, **hashes) == expected


def test_signed_phash_frame_and_hash_index_give_the_same_reasons():
    metas = _metas(HAND_ROWS)
    frame = pairs_frame(metas)
    signed = [None if h is None else h - (1 << 64) if h >= 1 << 63 else h for h in frame["phash"]]
    frame["phash"] = pd.array(signed, dtype="Int64")  # as `read_metadata` gives parquet's int64
    indexes = {
        "eval_hashes": PHashIndex([EVAL], radius=6),
        "unsafe_hashes": PHashIndex([UNSAFE], radius=6),
        "unsafe_words": UNSAFE_WORDS,
    }
    assert in_memory_drop_reasons(frame, HAND_CFG, **indexes) == [row[-1] for row in HAND_ROWS]


def test_float_phash_column_is_refused_by_the_hash_rules():
    frame = pd.DataFrame(_metas(HAND_ROWS))  # None among ints: pandas makes it float64
    assert in_memory_drop_reasons(frame, HAND_CFG) == in_memory_drop_reasons(_metas(HAND_ROWS), HAND_CFG)
    with pytest.raises(TypeError, match="float"):
        in_memory_drop_reasons(frame, HAND_CFG, eval_hashes=[EVAL])


def test_safety_rules_are_off_by_default():
    off = in_memory_drop_reasons(_metas(HAND_ROWS), dataclasses.replace(HAND_CFG, nsfw_image_scorer=""))
    assert not {"image_unsafe", "image_nsfw", "image_eval_duplicate", "text_unsafe"} & set(off)
    without_scores = pairs_frame(_metas(HAND_ROWS)).drop(columns="nsfw_score")
    assert "image_nsfw" not in in_memory_drop_reasons(without_scores, HAND_CFG)


def test_funnel_counts_each_reason():
    metas = _metas(HAND_ROWS)
    reasons = in_memory_drop_reasons(metas, HAND_CFG, unsafe_words=UNSAFE_WORDS)
    report = in_memory_funnel(metas, HAND_CFG, batch_size=1000, unsafe_words=UNSAFE_WORDS)
    assert report == FunnelReport.from_outcomes(len(metas), Counter(r or "kept" for r in reasons), 1000)
    assert report.dropped["text_unsafe"] == 1
    assert any("fewer than one training batch" in warning for warning in report.warnings)


def test_empty_corpus():
    assert in_memory_drop_reasons([], HAND_CFG) == []
    assert in_memory_funnel([], HAND_CFG).input_pairs == 0


@pytest.mark.parametrize("k", [1, 7, 40, 10_000])
def test_vocabulary_mask_is_corpus_vocabulary(k):
    rng = random.Random(k)
    words = [f"w{i}" for i in range(60)] + [f"w{i} w{i + 1}" for i in range(60)]
    counts = {token: rng.choice([1, 1, 1, 2, 2, 3, 5, 8]) for token in words}  # many ties
    tokens = np.array(list(counts), dtype=object)
    for least in (1, 3):
        mask = vocabulary_mask(tokens, np.array(list(counts.values())), k=k, min_count=least)
        assert set(tokens[mask]) == corpus_vocabulary(counts, k=k, min_count=least)


@pytest.mark.parametrize("k", [60, 600, 6000])
def test_skewed_corpus_agrees_with_drop_reason_per_pair(k):
    metas = [PairMeta("gen", i, **row) for i, row in enumerate(generate(3000, seed=k).to_pylist())]
    cfg = dataclasses.replace(HAND_CFG, rare_token_vocab_size=k, rare_token_min_word_share=0.001)
    expected = [drop_reason(facts, cfg) for facts in _facts(metas, cfg)]
    assert in_memory_drop_reasons(metas, cfg) == expected
    assert len(set(expected)) >= 8  # the rules that metadata can fire, and kept pairs


@pytest.mark.large
@pytest.mark.parametrize("hot_key_pairs", [10_000, 20])  # 20: the hottest keys take the side-input path
def test_beam_metadata_filter_agrees_with_the_in_memory_filter(tmp_path, hot_key_pairs):
    table = generate(3000, seed=7)
    rng = random.Random(7)
    scores = {sha256: rng.random() ** 8 for sha256 in table["sha256"].to_pylist()}  # 8% >= 0.5
    table = table.append_column("nsfw_score", pa.array([scores[s] for s in table["sha256"].to_pylist()]))
    write(table, str(tmp_path / "meta"), files=3)
    (tmp_path / "words.txt").write_text("logo\nclick here  # boilerplate stands in for unsafe words\n")
    overrides = [
        f"runner.work_dir={tmp_path / 'work'}",
        "filter.rare_token_vocab_size=400",  # of about 7,600 distinct tokens: the rule binds
        f"filter.unsafe_alt_words={tmp_path / 'words.txt'}",
        "filter.nsfw_image_scorer=tests.no_such_scorer:score",  # on: scores from the nsfw_score column
        f"filter.hot_key_pairs={hot_key_pairs}",
    ]
    cfg = load_config("local", "tiny", overrides)
    words = load_unsafe_words(cfg.filter.unsafe_alt_words)
    pattern = str(tmp_path / "meta" / "*.parquet")
    frame = read_metadata(pattern)
    expected = in_memory_funnel(frame, cfg.filter, cfg.train.batch_size, unsafe_words=words)
    fired = {reason for reason, pairs in expected.dropped.items() if pairs}
    assert fired == set(REASONS) - {"image_unsafe", "image_eval_duplicate"}

    report = run_filter_metadata(cfg, pattern, str(tmp_path / "out"))

    assert report.to_dict() == expected.to_dict()
    reasons = in_memory_drop_reasons(frame, cfg.filter, unsafe_words=words)
    dropped = Counter(
        (sha256, text, reason)
        for sha256, text, reason in zip(frame["sha256"], frame["text"], reasons, strict=True)
        if reason
    )
    lines = [line for path in (tmp_path / "out").glob("dropped-*.jsonl") for line in path.open()]
    assert Counter((r["sha256"], r["text"], r["reason"]) for r in map(json.loads, lines)) == dropped
