"""The corpus vocabulary of ALIGN's rare-token rule, as a distributed top-K count.

ALIGN drops alt-texts containing a token outside "the 100 million most frequent
unigrams and bigrams of the raw data set". The vocabulary here is the first K
tokens in `rank_key` order: by count, descending, ties broken by a 64-bit hash of
the token (then the token itself), which is deterministic and does not favour any
spelling or alphabet.

A fixed K only binds on a corpus with more than K distinct tokens: at the paper's
100M that is web scale, and a smaller corpus keeps every token, which is what it
should do (below millions of alt-texts a token seen once is as often a real word as
junk). Optionally, words (unigrams) must also occur at a minimum rate,
`min_word_count(alt_texts, share)` times: a rate means the same at every scale
and cannot bind below 1 / share alt-texts. Bigrams are held to the top-K only: far
sparser than words, most of them are unique until web scale.

At the paper's K = 100M no single worker should hold the vocabulary, so it is
never materialised. `TopKCutoff` finds the rank key of the K-th token by exact
radix selection, in which only small histograms are global:
1. a histogram of counts (how many tokens occur c times: at most a few thousand
   distinct c) locates the count c* of the K-th token and its rank n1 among the
   tokens with count c*;
2. among those, a histogram of the hash's top 16 bits locates the bucket and the
   rank n2 inside it;
3. the bucket's tokens (about 1/65536 of the count-c* tokens) are sorted on one
   worker and the n2-th gives the cutoff key.
A token is in the vocabulary iff `rank_key(token, count) <= cutoff` (and, for a
word, `count >= min_word_count`), decided where the token's count is
(`in_vocabulary`), and `RareTexts` joins that membership back to each distinct
alt-text on the token (`joins.AttachStats`: a token in very many texts, "the", gets its
membership through a side input instead), so every step scales with the corpus.

Example (the in-memory reference; the Beam transforms give the same set):
    >>> sorted(top_k_tokens({"a": 3, "b": 1, "c": 3}, 2))
    ['a', 'c']
    >>> sorted(corpus_vocabulary({"a": 3, "b": 1, "a b": 1}, k=10, min_count=2))
    ['a', 'a b']
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator, Mapping
from fractions import Fraction

import apache_beam as beam
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from alignpipe.filtering.columns import alt_words, concatenated, factorized
from alignpipe.filtering.joins import AttachStats, rows_by_bucket

RankKey = tuple[int, int, str]
BUCKET_SHIFT = 48  # level-2 buckets: the top 16 bits of the 64-bit token hash


def token_hash(token: str) -> int:
    """A stable 64-bit hash of a token (BLAKE2b), the same on every worker and run."""
    return int.from_bytes(hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest(), "big")


def rank_key(token: str, count: int) -> RankKey:
    """Sort key of the vocabulary order: smaller is more frequent."""
    return (-count, token_hash(token), token)


def top_k_tokens(counts: Mapping[str, int], k: int) -> list[str]:
    """The K first tokens in `rank_key` order, computed in memory (the reference)."""
    return sorted(counts, key=lambda t: rank_key(t, counts[t]))[:k]


def min_word_count(num_alt_texts: int, share: float) -> int:
    """The fewest occurrences a word needs at `share` occurrences per alt-text (at least 1).

    `share` is read as the decimal it was written as, so 3e-4 of 10,000 alt-texts is 3.
    """
    return max(1, math.ceil(Fraction(repr(float(share))) * num_alt_texts))


def is_word(token: str) -> bool:
    """Whether a token of `alt_unigrams_and_bigrams` is a unigram (bigrams hold a space)."""
    return " " not in token


def corpus_vocabulary(counts: Mapping[str, int], k: int, min_count: int = 1) -> set[str]:
    """The vocabulary computed in memory (the reference of `RareTexts`).

    Args:
        counts: token -> occurrences in the raw corpus.
        k: the top-K size.
        min_count: the fewest occurrences a word (unigram) needs, see `min_word_count`.
    """
    return {t for t in top_k_tokens(counts, k) if not is_word(t) or counts[t] >= min_count}


def select_bucket(histogram: Mapping[int, int], rank: int) -> tuple[int, int]:
    """Finds the bucket that holds the `rank`-th smallest element (1-based).

    Args:
        histogram: bucket -> number of elements; buckets are ordered ascending.
        rank: 1 <= rank <= sum of the histogram.

    Returns:
        (bucket, rank of the element within that bucket, 1-based).
    """
    below = 0
    for bucket in sorted(histogram):
        if below + histogram[bucket] >= rank:
            return bucket, rank - below
        below += histogram[bucket]
    raise ValueError(f"rank {rank} is beyond the {below} elements of the histogram")


def in_vocabulary(token: str, count: int, cutoff: RankKey | None, min_count: int = 1) -> bool:
    """Whether a token of corpus count `count` is in the vocabulary.

    Args:
        token: a unigram or bigram.
        count: its occurrences in the raw corpus.
        cutoff: the rank key of the K-th token (None: the top-K holds every token).
        min_count: the fewest occurrences a word (unigram) needs; bigrams are exempt.
    """
    if is_word(token) and count < min_count:
        return False
    return cutoff is None or rank_key(token, count) <= cutoff


def _level_one(count_histogram: dict[int, int], k: int) -> tuple[int, int] | None:
    """(-c*, rank among count-c* tokens), or None when the corpus has <= K tokens."""
    if sum(count_histogram.values()) <= k:
        return None
    return select_bucket(count_histogram, k)


def _level_two(bucket_histogram: dict[int, int], level_one: tuple[int, int] | None):
    return None if level_one is None else select_bucket(bucket_histogram, level_one[1])


def _cutoff(bucket_keys: list[RankKey], level_two: tuple[int, int] | None) -> RankKey | None:
    return None if level_two is None else sorted(bucket_keys)[level_two[1] - 1]


class TopKCutoff(beam.PTransform):
    """(token, count) pairs -> one element: the rank key of the K-th token, or None.

    None means the corpus has at most K distinct tokens, so all are in the vocabulary.

    Args:
        k: vocabulary size.
        bucket_shift: level-2 buckets are `token_hash >> bucket_shift` (48: 65536 buckets).
    """

    def __init__(self, k: int, bucket_shift: int = BUCKET_SHIFT):
        super().__init__()
        self.k = k
        self.bucket_shift = bucket_shift

    def expand(self, token_counts):
        shift = self.bucket_shift
        level_one = (
            token_counts
            | "NegatedCounts" >> beam.Map(lambda kv: -kv[1])
            | "CountHistogram" >> beam.combiners.Count.PerElement()
            | "CountHistogramDict" >> beam.combiners.ToDict()
            | "LevelOne" >> beam.Map(_level_one, self.k)
        )
        boundary = token_counts | "AtBoundaryCount" >> beam.Filter(
            lambda kv, one: one is not None and -kv[1] == one[0], beam.pvalue.AsSingleton(level_one)
        )
        level_two = (
            boundary
            | "HashBuckets" >> beam.Map(lambda kv: token_hash(kv[0]) >> shift)
            | "BucketHistogram" >> beam.combiners.Count.PerElement()
            | "BucketHistogramDict" >> beam.combiners.ToDict()
            | "LevelTwo" >> beam.Map(_level_two, beam.pvalue.AsSingleton(level_one))
        )
        return (
            boundary
            | "InBoundaryBucket"
            >> beam.Filter(
                lambda kv, two: two is not None and token_hash(kv[0]) >> shift == two[0],
                beam.pvalue.AsSingleton(level_two),
            )
            | "RankKeys" >> beam.Map(lambda kv: rank_key(kv[0], kv[1]))
            | "BucketKeys" >> beam.combiners.ToList()
            | "Cutoff" >> beam.Map(_cutoff, beam.pvalue.AsSingleton(level_two))
        )


def normalised_tokens(alt: str) -> list[str]:
    """`rules.alt_unigrams_and_bigrams` of a normalised alt-text (`rules.normalise_alt_text`).

    A normalised text is its unigrams joined by single spaces, and tokenizing a unigram again
    gives it back (lowercasing is idempotent on every code point), so splitting is enough.
    """
    words = alt.split()
    return words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]


def token_counts(alts, pairs: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """Occurrences of each unigram and bigram in normalised alt-texts carried by `pairs` pairs.

    Words are split off with Arrow and counted by id; a bigram is a pair of word ids until
    its string is built, once per distinct bigram.

    Args:
        alts: distinct normalised alt-texts, shape [texts] (an Arrow array, or anything
            `pyarrow.array` reads).
        pairs: the pairs that carry each, int array of shape [texts].

    Returns:
        (tokens, counts): distinct tokens, Arrow string array of shape [tokens], and int64
        counts (every occurrence in every pair counted, as `alt_unigrams_and_bigrams` lists
        them).
    """
    lengths, all_words = alt_words(alts)
    word_ids, words = factorized(all_words)
    weights = np.repeat(np.asarray(pairs, dtype=np.int64), lengths)
    follows = np.ones(len(word_ids), dtype=bool)  # word i and word i + 1 are in one text
    follows[np.cumsum(lengths)[lengths > 0] - 1] = False
    first = np.flatnonzero(follows)
    bigram_ids, bigrams = pd.factorize(word_ids[first] * len(words) + word_ids[first + 1])
    bigram_words = [words.take(bigrams // len(words)), words.take(bigrams % len(words))]
    separator = pa.scalar(" ", words.type)
    tokens = pa.concat_arrays([words, pc.binary_join_element_wise(*bigram_words, separator)])
    counts = np.concatenate(
        [np.bincount(word_ids, weights, len(words)), np.bincount(bigram_ids, weights[first], len(bigrams))]
    )
    return tokens, counts.astype(np.int64)


def _summed(parts: list[tuple[pa.Array, np.ndarray]]) -> tuple[pa.Array, np.ndarray]:
    """(tokens, counts) parts as one, each token once with its counts summed."""
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return pa.array([], pa.large_string()), np.array([], dtype=np.int64)
    ids, tokens = factorized(concatenated([tokens for tokens, _ in parts]))
    counts = np.bincount(ids, np.concatenate([counts for _, counts in parts]), len(tokens))
    return tokens, counts.astype(np.int64)


def bucketed_token_counts(text_counts: pd.Series, buckets: int) -> Iterator[tuple]:
    """Pairs per normalised alt-text (a Series indexed by text) -> (bucket, (tokens, counts))
    per bucket of `joins.key_buckets` that has tokens (see `token_counts`)."""
    tokens, counts = token_counts(text_counts.index.array, text_counts.to_numpy(np.int64))
    for bucket, rows in rows_by_bucket(tokens, buckets):
        yield bucket, (tokens.take(rows), counts[rows])


class RareTexts(beam.PTransform):
    """Counts of normalised alt-texts -> each normalised text with a token outside the vocabulary.

    The input holds pandas Series of pairs per normalised alt-text (the index; one Series per
    batch of pairs, a text may be in many). The vocabulary is the top `k` unigrams + bigrams
    counted over those pairs (every pair's occurrences count), less the words seen fewer than
    `min_word_count(number of pairs, min_word_share)` times. Each text with a unigram or bigram
    outside it appears once in the output; `rules.alt_has_rare_token` holds exactly for those.

    Token counts travel as arrays, (tokens, counts), one per batch and bucket (`buckets` of
    them), summed with Arrow and numpy, not one element per token. Below K distinct tokens with no
    minimum word count (at the paper's K = 100M: every corpus short of web scale) every token
    is in, and nothing more is computed.

    Args:
        k: the top-K size.
        min_word_share: occurrences per alt-text a word needs (0: none).
        hot: distinct texts a token may be in before its membership reaches them through a
            side input instead of a join (`joins.AttachStats`).
        buckets: the token counts' buckets.
    """

    def __init__(self, k: int, min_word_share: float = 0.0, hot: int = 10_000, buckets: int = 16):
        super().__init__()
        self.k, self.min_word_share, self.hot, self.buckets = k, min_word_share, hot, buckets

    def expand(self, text_counts):
        k, buckets = self.k, self.buckets
        text_counts = text_counts | "AsSeries" >> beam.Map(pd.Series, dtype=np.int64)
        counts_by_bucket = (
            text_counts
            | "Tokens" >> beam.FlatMap(bucketed_token_counts, buckets)
            | "CountTokens" >> beam.CombinePerKey(_SumCounts())
        )
        min_count = (
            text_counts
            | "Pairs" >> beam.Map(lambda counts: int(counts.sum()))
            | "CountPairs" >> beam.CombineGlobally(sum)
            | "MinWordCount" >> beam.Map(min_word_count, self.min_word_share)
        )
        everything_in = (
            counts_by_bucket
            | "DistinctTokens" >> beam.MapTuple(lambda _, counts: len(counts[0]))
            | "CountDistinctTokens" >> beam.CombineGlobally(sum)
            | "EverythingIn"
            >> beam.Map(
                lambda distinct, least: distinct <= k and least <= 1, beam.pvalue.AsSingleton(min_count)
            )
        )
        token_counts = counts_by_bucket | "TokenCounts" >> beam.FlatMap(
            lambda kv, all_in: [] if all_in else zip(kv[1][0].to_pylist(), kv[1][1].tolist(), strict=True),
            beam.pvalue.AsSingleton(everything_in),
        )
        cutoff = token_counts | "TopK" >> TopKCutoff(k)
        membership = token_counts | "Membership" >> beam.Map(
            lambda kv, cut, least: (kv[0], in_vocabulary(kv[0], kv[1], cut, least)),
            beam.pvalue.AsSingleton(cutoff),
            beam.pvalue.AsSingleton(min_count),
        )
        return (
            text_counts
            | "TextsToCheck"
            >> beam.FlatMap(
                lambda counts, all_in: [] if all_in else counts.index.tolist(),
                beam.pvalue.AsSingleton(everything_in),
            )
            | "DistinctTexts" >> beam.Distinct()
            | "TokensOfText" >> beam.FlatMap(lambda text: [(t, text) for t in set(normalised_tokens(text))])
            | "WithMembership" >> AttachStats(membership, False, self.hot)
            | "OutsideVocabulary" >> beam.FlatMapTuple(lambda text, member: [] if member else [text])
            | "RareTextsOnce" >> beam.Distinct()
        )


class _SumCounts(beam.CombineFn):
    """(tokens, counts) arrays, summed per token; an accumulator holds a few parts at most."""

    MAX_PARTS = 16

    def create_accumulator(self) -> list:
        return []

    def add_input(self, parts: list, counts: tuple[np.ndarray, np.ndarray]) -> list:
        parts.append(counts)
        return [_summed(parts)] if len(parts) >= self.MAX_PARTS else parts

    def merge_accumulators(self, accumulators: Iterable[list]) -> list:
        return [_summed([part for parts in accumulators for part in parts])]

    def extract_output(self, parts: list) -> tuple[np.ndarray, np.ndarray]:
        return _summed(parts)
