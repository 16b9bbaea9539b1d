import random
from collections import Counter

import apache_beam as beam
import numpy as np
import pandas as pd
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

from alignpipe.config import IN_PROCESS_RUNNER
from alignpipe.filtering.rules import alt_unigrams_and_bigrams, normalise_alt_text
from alignpipe.filtering.vocabulary import (
    RareTexts,
    TopKCutoff,
    corpus_vocabulary,
    in_vocabulary,
    is_word,
    min_word_count,
    normalised_tokens,
    rank_key,
    select_bucket,
    token_counts,
    token_hash,
    top_k_tokens,
)

TEXTS = ["a red dog", "A red cat", "a red dog!", "blue dog", "a blue bird", "zebra", "red dog a"]


def _pipeline() -> beam.Pipeline:
    # the in-process runner: DirectRunner would try to download the Prism runner first
    return beam.Pipeline(options=PipelineOptions([f"--runner={IN_PROCESS_RUNNER}"]))


def test_top_k_on_a_toy_corpus():
    counts = Counter(t for text in TEXTS for t in alt_unigrams_and_bigrams(text))
    assert counts["red"] == 4 and counts["a"] == 5 and counts["dog"] == 4 and counts["red dog"] == 3
    assert top_k_tokens(counts, 1) == ["a"]
    assert set(top_k_tokens(counts, 3)) == {"a", "red", "dog"}
    assert counts["a red"] == counts["red dog"] == 3  # a tie, broken by token_hash
    first_of_tie = min(["red dog", "a red"], key=token_hash)
    assert top_k_tokens(counts, 4)[3] == first_of_tie
    assert len(top_k_tokens(counts, 1000)) == len(counts)


def test_rank_key_and_membership():
    assert rank_key("x", 5) < rank_key("y", 4)
    assert in_vocabulary("anything", 1, None)
    cutoff = rank_key("b", 3)
    assert (
        in_vocabulary("b", 3, cutoff) and in_vocabulary("z", 4, cutoff) and not in_vocabulary("z", 2, cutoff)
    )


def test_select_bucket():
    histogram = {5: 2, 1: 3, 9: 1}  # sorted: 1,1,1,5,5,9
    assert [select_bucket(histogram, r) for r in range(1, 7)] == [
        (1, 1),
        (1, 2),
        (1, 3),
        (5, 1),
        (5, 2),
        (9, 1),
    ]
    with pytest.raises(ValueError):
        select_bucket(histogram, 7)


@pytest.mark.large
def test_distributed_cutoff_equals_the_in_memory_top_k():
    rng = random.Random(0)
    words = [f"w{i}" for i in range(60)]
    corpus = [" ".join(rng.choices(words, weights=range(60, 0, -1), k=rng.randint(1, 6))) for _ in range(300)]
    counts = Counter(t for text in corpus for t in alt_unigrams_and_bigrams(text))
    ks = [1, 17, 50, 200, len(counts), len(counts) + 5]
    with _pipeline() as p:
        token_counts = p | beam.Create(sorted(counts.items()))
        for k in ks:
            for shift in (48, 62) if k in (50, 200) else (62,):  # 62: 4 buckets, level 3 sorts many
                cutoff = token_counts | f"Cutoff{k}_{shift}" >> TopKCutoff(k, bucket_shift=shift)
                vocabulary = token_counts | f"Members{k}_{shift}" >> beam.FlatMap(
                    lambda kv, cut: [kv[0]] if in_vocabulary(kv[0], kv[1], cut) else [],
                    beam.pvalue.AsSingleton(cutoff),
                )
                assert_that(vocabulary, equal_to(top_k_tokens(counts, k)), label=f"Check{k}_{shift}")
    ranked = sorted(counts.values(), reverse=True)
    assert ranked[49] == ranked[50] and ranked[199] == ranked[200]  # K = 50, 200 split a tie


def _rare_texts(vocabulary: set[str]) -> list[str]:
    """The normalised TEXTS with a token outside `vocabulary`, the reference of `RareTexts`."""
    rare = {
        normalise_alt_text(t) for t in TEXTS if any(x not in vocabulary for x in alt_unigrams_and_bigrams(t))
    }
    return sorted(rare)


def _text_counts(p):
    """TEXTS as `RareTexts` reads them: normalised text -> pairs, here in two batches."""
    batches = [Counter(normalise_alt_text(t) for t in TEXTS[i::2]) for i in range(2)]
    return p | beam.Create([pd.Series(batch) for batch in batches])


def test_rare_texts():
    counts = Counter(t for text in TEXTS for t in alt_unigrams_and_bigrams(text))
    k = 6
    expected = _rare_texts(set(top_k_tokens(counts, k)))
    assert "zebra" in expected and "a red dog" not in expected
    for hot in (10_000, 1):  # hot=1: every token's membership comes through the side input
        with _pipeline() as p:
            result = _text_counts(p) | RareTexts(k, hot=hot, buckets=3)
            assert_that(result, equal_to(expected))


def test_min_word_count_is_a_rate_of_the_corpus_size():
    assert min_word_count(10_000, 3e-4) == 3  # the decimal as written: exactly 3, not 3.0000000000000004
    assert min_word_count(10_001, 3e-4) == 4  # 3.0003 occurrences: a word needs 4
    assert min_word_count(9_999, 3e-4) == 3
    assert min_word_count(3_333, 3e-4) == 1  # below 1 / share alt-texts the rate cannot bind
    assert min_word_count(3_334, 3e-4) == 2
    assert min_word_count(10**9, 0.0) == 1 and min_word_count(0, 0.5) == 1
    assert min_word_count(2_000_000_000, 1e-7) == 200


def test_min_count_holds_words_not_bigrams():
    assert is_word("dog") and is_word("don't") and not is_word("red dog")
    assert in_vocabulary("dog", 3, None, min_count=3)
    assert not in_vocabulary("dog", 2, None, min_count=3)
    assert in_vocabulary("red dog", 1, None, min_count=3)
    cutoff = rank_key("b", 3)
    assert not in_vocabulary("red dog", 2, cutoff, min_count=1)  # the top-K still holds bigrams
    assert not in_vocabulary("z", 5, cutoff, min_count=6) and in_vocabulary("z", 5, cutoff, min_count=5)


def test_corpus_vocabulary_is_top_k_less_the_rare_words():
    counts = Counter(t for text in TEXTS for t in alt_unigrams_and_bigrams(text))
    assert corpus_vocabulary(counts, 1000) == set(counts)  # a small corpus: the paper's K keeps everything
    assert corpus_vocabulary(counts, 3) == set(top_k_tokens(counts, 3))
    two = corpus_vocabulary(counts, 1000, min_count=2)
    assert two == {t for t, c in counts.items() if c >= 2 or " " in t}
    assert "zebra" not in two and "cat" not in two and "red cat" in two and "blue" in two


@pytest.mark.large
def test_rare_texts_with_a_minimum_word_share():
    share = 2 / 10  # 7 texts: a word needs ceil(1.4) = 2 occurrences
    counts = Counter(t for text in TEXTS for t in alt_unigrams_and_bigrams(text))
    vocabulary = corpus_vocabulary(counts, 1000, min_word_count(len(TEXTS), share))
    expected = _rare_texts(vocabulary)
    assert "a red cat" in expected  # "cat" is seen once
    with _pipeline() as p:
        result = _text_counts(p) | RareTexts(1000, min_word_share=share)
        assert_that(result, equal_to(expected))


def test_below_k_tokens_no_text_is_rare_without_a_join():
    with _pipeline() as p:
        result = _text_counts(p) | RareTexts(10**8)
        assert_that(result, equal_to([]))


def test_token_counts_weigh_each_text_by_its_pairs():
    texts = [*TEXTS, "", "Don't STOP", "İstanbul ΟΔΟΣ", "one", "one"]
    alts = pd.Series([normalise_alt_text(t) for t in texts]).value_counts(sort=False)
    expected = Counter()
    for alt, pairs in alts.items():
        assert normalised_tokens(alt) == alt_unigrams_and_bigrams(alt)
        for token in alt_unigrams_and_bigrams(alt):
            expected[token] += pairs
    tokens, counts = token_counts(alts.index.to_numpy(object), alts.to_numpy())
    assert dict(zip(tokens.to_pylist(), counts.tolist(), strict=True)) == expected
    assert counts.dtype == np.int64
    empty = token_counts(np.array([], dtype=object), np.array([], dtype=np.int64))
    assert [len(part) for part in empty] == [0, 0]
