"""ALIGN's filter rules on a pandas frame of pair metadata, column by column.

The Beam filter (alignpipe.filtering.batches) calls `outcome_codes` on each batch of pairs,
with the answers of the corpus-wide rules that its joins counted. `in_memory_outcome_codes` (and
`in_memory_drop_reasons`, `in_memory_funnel`) counts those itself, with pandas, over a whole
corpus in one process, then calls `outcome_codes` once: the in-memory peer of
`run_filter_metadata`, checked against it in tests/filtering/test_frame_rules.py (identical
funnels on random skewed data) and timed beside it in bench/filter_vs_pandas.py.

In memory, every statistic is taken over the raw corpus, as in `rules`:
- alts per image: distinct `normalise_alt_text` of the pairs with the image's SHA-256;
- images per alt-text: distinct SHA-256 of the pairs with that normalised alt-text;
- token counts: `alt_unigrams_and_bigrams` of every pair's text, every occurrence counted;
  the vocabulary is the set `vocabulary.corpus_vocabulary(counts, k=rare_token_vocab_size,
  min_count=min_word_count(pairs, rare_token_min_word_share))`, found by `vocabulary_mask`.
Then each pair gets the first rule of `REASONS` it fails. An image whose `phash` is null is
undecodable; `width` and `height` are the image's size as downloaded. The safety inputs are
arguments, empty (rule off) by default: the pHash sets of `image_unsafe` and
`image_eval_duplicate` (the metadata-only filter has no evaluation images) and the word list of
`text_unsafe`. `image_nsfw` reads the scores of an `nsfw_score` column (0 without one), as the
metadata filter does: metadata carries no image bytes to score.

The group statistics are vectorised (pandas factorize / groupby / nunique): text work is done
once per distinct alt-text, never per pair. The per-pair image rules are the comparisons of
`rules.image_too_small` and `rules.image_aspect_ratio_too_large` on whole columns, and
`rules.image_is_nsfw` on the score column; the pHash rules call `rules.image_is_unsafe` /
`rules.image_is_eval_duplicate` once per distinct hash.

Example:
    >>> from alignpipe.config import FilterConfig
    >>> from alignpipe.filtering.facts import PairMeta
    >>> pairs = [PairMeta("s", 0, "aa", "a red dog on grass", 640, 480, 7),
    ...          PairMeta("s", 1, "bb", "tiny", 640, 480, 9),
    ...          PairMeta("s", 2, "cc", "a red dog on grass", 640, 480, None)]
    >>> in_memory_drop_reasons(pairs, FilterConfig())
    [None, 'text_too_short', 'image_undecodable']
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from alignpipe import fs
from alignpipe.config import FilterConfig
from alignpipe.errors import InputError
from alignpipe.filtering.facts import METADATA_COLUMNS, PairMeta
from alignpipe.filtering.funnel import FunnelReport
from alignpipe.filtering.rules import (
    NO_UNSAFE_WORDS,
    REASONS,
    UnsafeWordList,
    alt_has_unsafe_words,
    alt_unigrams_and_bigrams,
    image_is_eval_duplicate,
    image_is_nsfw,
    image_is_unsafe,
    normalise_alt_text,
)
from alignpipe.filtering.vocabulary import is_word, min_word_count, top_k_tokens
from alignpipe.imaging.phash import PHashIndex

# The columns the rules read (`read_metadata` can read just these); `nsfw_score` may be absent.
REQUIRED_COLUMNS: tuple[str, ...] = ("sha256", "text", "width", "height", "phash")
RULE_COLUMNS: tuple[str, ...] = (*REQUIRED_COLUMNS, "nsfw_score")
KEPT = len(REASONS)  # the outcome code of a kept pair; a dropped pair's code is its REASONS index
_UINT64 = (1 << 64) - 1  # parquet holds the unsigned 64-bit pHash as a signed int64

Pairs = pd.DataFrame | Iterable[PairMeta]
HashSet = PHashIndex | Iterable[int]


def in_memory_drop_reasons(
    pairs: Pairs,
    cfg: FilterConfig,
    eval_hashes: HashSet = (),
    unsafe_hashes: HashSet = (),
    unsafe_words: UnsafeWordList = NO_UNSAFE_WORDS,
) -> list[str | None]:
    """The first rule of `REASONS` each pair fails, or None to keep it, in input order.

    Args:
        pairs: `PairMeta` records, or a DataFrame with at least the columns of `REQUIRED_COLUMNS`
            (`phash`: integers, signed or unsigned, null when the image does not decode), and
            optionally `nsfw_score`.
        cfg: the thresholds; `image_nsfw` is on while `cfg.nsfw_image_scorer` is set.
        eval_hashes: pHashes of the evaluation images (empty: the rule is off).
        unsafe_hashes: pHashes of blocklisted images (empty: the rule is off).
        unsafe_words: the `text_unsafe` word list (`safety.load_unsafe_words`; empty: off).
    """
    names = np.array([*REASONS, None], dtype=object)
    codes = in_memory_outcome_codes(pairs, cfg, eval_hashes, unsafe_hashes, unsafe_words)
    return names[codes].tolist()


def in_memory_funnel(
    pairs: Pairs,
    cfg: FilterConfig,
    batch_size: int = 0,
    eval_hashes: HashSet = (),
    unsafe_hashes: HashSet = (),
    unsafe_words: UnsafeWordList = NO_UNSAFE_WORDS,
) -> FunnelReport:
    """The funnel of the filter on `pairs` (see `in_memory_drop_reasons` for the arguments).

    Args:
        batch_size: the training batch (`train.batch_size`) for the kept-pairs warning; 0: none.
    """
    codes = in_memory_outcome_codes(pairs, cfg, eval_hashes, unsafe_hashes, unsafe_words)
    return funnel_of_outcome_codes(codes, batch_size)


def funnel_of_outcome_codes(codes: np.ndarray, batch_size: int = 0) -> FunnelReport:
    """The funnel of `in_memory_outcome_codes` (int array of shape [pairs])."""
    counts = np.bincount(codes, minlength=KEPT + 1)
    outcomes = {reason: int(counts[i]) for i, reason in enumerate(REASONS)} | {"kept": int(counts[KEPT])}
    return FunnelReport.from_outcomes(len(codes), outcomes, batch_size)


def in_memory_outcome_codes(
    pairs: Pairs,
    cfg: FilterConfig,
    eval_hashes: HashSet = (),
    unsafe_hashes: HashSet = (),
    unsafe_words: UnsafeWordList = NO_UNSAFE_WORDS,
) -> np.ndarray:
    """Per pair, int array of shape [pairs]: the index in `REASONS` of its drop reason, or `KEPT`."""
    frame = pairs_frame(pairs)
    image_ids, _ = pd.factorize(frame["sha256"])
    text_ids, texts = _normalised_text_ids(frame["text"])
    ids = pd.DataFrame({"image": image_ids, "text": text_ids})
    alts_per_image = ids.groupby("image")["text"].transform("nunique").to_numpy()
    images_per_alt = ids.groupby("text")["image"].transform("nunique").to_numpy()
    pairs_per_text = np.bincount(text_ids, minlength=len(texts))
    corpus = {
        "image_too_many_alts": alts_per_image > cfg.max_alts_per_image,
        "text_shared_by_too_many_images": images_per_alt > cfg.max_images_per_alt,
        "text_rare_token": _has_rare_token(texts, pairs_per_text, cfg, num_pairs=len(frame))[text_ids],
    }
    return outcome_codes(frame, text_ids, texts, corpus, cfg, eval_hashes, unsafe_hashes, unsafe_words)


def outcome_codes(
    frame: pd.DataFrame,
    text_ids: np.ndarray,
    texts: list[str],
    corpus: dict[str, np.ndarray],
    cfg: FilterConfig,
    eval_hashes: HashSet = (),
    unsafe_hashes: HashSet = (),
    unsafe_words: UnsafeWordList = NO_UNSAFE_WORDS,
) -> np.ndarray:
    """The rules on whole columns, given the corpus rules' answers: the outcome code per pair.

    Args:
        frame: the pairs, with the columns of `RULE_COLUMNS` (`nsfw_score` optional).
        text_ids: per pair, int array of shape [pairs]: its normalised alt-text in `texts`.
        texts: distinct normalised alt-texts (`normalise_alt_text`).
        corpus: per pair, bool arrays of shape [pairs], for the rules that count over the
            corpus: "image_too_many_alts", "text_shared_by_too_many_images", "text_rare_token".
        cfg, eval_hashes, unsafe_hashes, unsafe_words: as for `in_memory_drop_reasons`.

    Returns:
        Int array of shape [pairs]: the index in `REASONS` of each pair's drop reason, or `KEPT`.
    """
    # A normalised text is its unigrams joined by single spaces: `alt_word_count` without the regex.
    words = np.fromiter((len(t.split()) for t in texts), np.int64, len(texts))[text_ids]
    unsafe_text = _has_unsafe_words(texts, unsafe_words)[text_ids]
    phash = frame["phash"]
    width = frame["width"].to_numpy(np.int64)
    height = frame["height"].to_numpy(np.int64)
    short, long = np.minimum(width, height), np.maximum(width, height)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = long / short  # float64, as in rules.image_aspect_ratio_too_large
    drops = {
        "image_undecodable": phash.isna().to_numpy(),
        "image_unsafe": _near_any(phash, unsafe_hashes, cfg.unsafe_image_max_hamming, image_is_unsafe),
        "image_nsfw": _nsfw(frame, cfg),
        "image_eval_duplicate": _near_any(
            phash, eval_hashes, cfg.eval_duplicate_max_hamming, image_is_eval_duplicate
        ),
        "image_too_small": short <= cfg.min_image_short_side,
        "image_aspect_ratio_too_large": (short <= 0) | (ratio >= cfg.max_aspect_ratio),
        "text_unsafe": unsafe_text,
        "text_too_short": words < cfg.min_alt_words,
        "text_too_long": words > cfg.max_alt_words,
        **corpus,
    }
    unknown = [reason for reason in REASONS if reason not in drops]
    if unknown:  # a rule added to rules.py: the frame rules must learn it before they can be trusted
        raise NotImplementedError(f"the frame rules do not implement the rules {unknown}")
    # np.select takes, per pair, the first condition that holds: REASONS order.
    return np.select([drops[reason] for reason in REASONS], list(range(len(REASONS))), default=KEPT)


def pairs_frame(pairs: Pairs) -> pd.DataFrame:
    """`pairs` as a DataFrame of `PairMeta` columns; a DataFrame is returned as it is.

    The `phash` column is built with object dtype: a float column would round 64-bit hashes.
    """
    if isinstance(pairs, pd.DataFrame):
        return pairs
    rows: Sequence[PairMeta] = list(pairs)
    frame = pd.DataFrame.from_records(rows, columns=METADATA_COLUMNS)
    frame["phash"] = pd.Series([row.phash for row in rows], dtype=object)
    return frame


def read_metadata(pattern: str, columns: Sequence[str] = METADATA_COLUMNS) -> pd.DataFrame:
    """The pairs of the parquet files matching `pattern` (local or gs://), in path order.

    Args:
        pattern: a glob of metadata parquet files (columns of `PairMeta`).
        columns: the columns to read where a file has them; `RULE_COLUMNS` is enough for the funnel.

    Returns:
        One DataFrame; `phash` as pandas' nullable Int64 (signed, as stored), text as Python str.

    Raises:
        InputError: nothing matches `pattern`, or a file lacks one of `REQUIRED_COLUMNS`.
    """
    paths = fs.glob(pattern)
    if not paths:
        raise InputError(f"no pair metadata files match {pattern!r}")
    tables = []
    for path in paths:
        file = pq.ParquetFile(io.BytesIO(fs.read_bytes(path)))
        missing = [c for c in REQUIRED_COLUMNS if c not in file.schema_arrow.names]
        if missing:
            raise InputError(f"pair metadata file {path!r} lacks the columns {missing}")
        tables.append(file.read(columns=[c for c in columns if c in file.schema_arrow.names]))
    table = pa.concat_tables(tables, promote_options="default")  # a column some files lack: nulls
    del tables
    return table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get, self_destruct=True)


def _normalised_text_ids(raw: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Per pair, the id of its normalised alt-text; and the distinct normalised texts by id."""
    raw_ids, raw_texts = pd.factorize(raw)
    normalised = [normalise_alt_text(text) for text in raw_texts]
    norm_of_raw, texts = pd.factorize(pd.Series(normalised, dtype=object))
    return norm_of_raw[raw_ids], list(texts)


def _has_rare_token(texts: list[str], pairs_per_text: np.ndarray, cfg: FilterConfig, num_pairs: int):
    """Per distinct normalised text, bool array: whether a token of it is outside the vocabulary.

    A raw text has the tokens of its normalised text, so the corpus token counts are the
    tokens of each distinct text weighted by the pairs that carry it.
    """
    token_lists = [alt_unigrams_and_bigrams(text) for text in texts]
    text_of_token = np.repeat(np.arange(len(texts)), [len(tokens) for tokens in token_lists])
    flat = np.array(list(itertools.chain.from_iterable(token_lists)), dtype=object)
    del token_lists
    token_ids, tokens = pd.factorize(flat)
    counts = np.bincount(token_ids, weights=pairs_per_text[text_of_token], minlength=len(tokens))
    in_vocabulary = vocabulary_mask(
        np.asarray(tokens, dtype=object),
        counts.astype(np.int64),
        k=cfg.rare_token_vocab_size,
        min_count=min_word_count(num_pairs, cfg.rare_token_min_word_share),
    )
    rare = ~in_vocabulary[token_ids]
    return np.bincount(text_of_token, weights=rare, minlength=len(texts)) > 0


def vocabulary_mask(tokens: np.ndarray, counts: np.ndarray, k: int, min_count: int = 1) -> np.ndarray:
    """Which tokens are in the vocabulary: the set of `vocabulary.corpus_vocabulary`, vectorised.

    The top K in `rank_key` order are the tokens counted more often than the K-th token,
    plus the first of the tokens with its count by `rank_key` (`top_k_tokens` on those
    alone): only the tokens tied at the boundary are hashed and sorted.

    Args:
        tokens: distinct unigrams and bigrams, object array of shape [tokens].
        counts: their occurrences in the raw corpus, int array of shape [tokens].
        k: the top-K size.
        min_count: the fewest occurrences a word (unigram) needs.

    Returns:
        Bool array of shape [tokens].
    """
    in_top_k = np.ones(len(tokens), dtype=bool)
    if len(tokens) > k:
        boundary = np.partition(counts, len(counts) - k)[len(counts) - k]  # the K-th largest count
        in_top_k = counts > boundary
        tied = np.flatnonzero(counts == boundary)
        position = dict(zip(tokens[tied].tolist(), tied.tolist(), strict=True))
        chosen = top_k_tokens(dict.fromkeys(position, int(boundary)), k - int(in_top_k.sum()))
        in_top_k[[position[token] for token in chosen]] = True
    words = np.fromiter((is_word(token) for token in tokens), dtype=bool, count=len(tokens))
    return in_top_k & (~words | (counts >= min_count))


def _nsfw(frame: pd.DataFrame, cfg: FilterConfig) -> np.ndarray:
    """Per pair, bool array: `rules.image_is_nsfw` of the `nsfw_score` column (0 without one)."""
    if not cfg.nsfw_image_scorer or "nsfw_score" not in frame:
        return np.zeros(len(frame), dtype=bool)
    return image_is_nsfw(frame["nsfw_score"].fillna(0.0).to_numpy(np.float64), cfg.nsfw_image_threshold)


def _has_unsafe_words(texts: list[str], unsafe_words: UnsafeWordList) -> np.ndarray:
    """Per distinct normalised text, bool array: whether it holds a listed word or phrase."""
    if not unsafe_words.phrases:
        return np.zeros(len(texts), dtype=bool)
    return np.array([alt_has_unsafe_words(text, unsafe_words) for text in texts], dtype=bool)


def _near_any(phash: pd.Series, hashes: HashSet, max_hamming: int, rule) -> np.ndarray:
    """Per pair, bool array: `rule(hash, index, max_hamming)`, each distinct hash checked once."""
    if not isinstance(hashes, PHashIndex):
        hashes = PHashIndex(hashes, radius=max_hamming)
    if not len(hashes):
        return np.zeros(len(phash), dtype=bool)
    if phash.dtype.kind == "f":
        raise TypeError(
            "the phash column is float: 64-bit hashes have lost their low bits; read parquet with "
            "`read_metadata` or pass PairMeta records"
        )
    hash_ids, distinct = pd.factorize(phash)  # nulls get -1
    near = np.array([rule(int(h) & _UINT64, hashes, max_hamming) for h in distinct] + [False])
    return near[hash_ids]
