"""The filter's decisions on batches of pairs: few, fat Beam elements instead of one per pair.

Beam's Python runners spend microseconds on every element handed from one transform to the
next, and a combine or a join costs tens of microseconds per key, whatever the element's size;
the rules themselves cost less than that. So the filter moves pairs as batches: a `PairBatch`
is `(batch id, frame)`, the frame a pandas DataFrame of up to `BATCH_ROWS` pairs with the
columns of `PairMeta`, `alt` (the normalised alt-text) added; `phash` is unsigned or signed
as read, null when the image does not decode. Its text columns are Arrow strings
(`STRING`): a batch crosses a shuffle, and Beam sizes the first elements of every step by
encoding them, which for Arrow buffers is a copy and for Python strings an object each. The
`shard` column, one path repeated, is categorical.

The corpus rules ask per key (image, normalised alt-text) whether it has more than a threshold
of distinct partners. `DecideBatches` answers them with joins whose elements are batches too:
each pair batch is cut into `buckets` pieces by a stable hash of the key (`joins.key_buckets`),
one GroupByKey per bucket brings every row of that bucket's keys together, and `KeysOverCap`
counts each key's distinct partners over the whole bucket at once (Arrow and numpy arrays),
then names the rows of the keys over the threshold. A bucket holds about 1 / `buckets` of the
corpus and the count costs per row, not per key, so a popular key ("logo") costs no more than
its rows. The flagged rows go back to their batch (a join on the batch id) and the rules are
applied to the whole batch at once (`frame_rules.outcome_codes`, the rules on whole columns that
the in-memory pandas filter applies too). One DoFn per side of the joins reads a batch (`_KeysOfBatch`, then
`SummariseBatch`): Beam's SDK encodes the first elements of every output it hands on to size
them, and a batch is large.
"""

from __future__ import annotations

from collections.abc import Iterator
from json.encoder import encode_basestring

import apache_beam as beam
import numpy as np
import pandas as pd

from alignpipe.config import FilterConfig
from alignpipe.data.records import UINT64
from alignpipe.filtering.facts import METADATA_COLUMNS, PairMeta
from alignpipe.filtering.frame_rules import KEPT, outcome_codes
from alignpipe.filtering.joins import KeysOverCap, bucket_pieces, key_buckets
from alignpipe.filtering.rules import NO_UNSAFE_WORDS, REASONS, UnsafeWordList, normalise_alt_text
from alignpipe.filtering.stats import CorpusStatsAccumulator
from alignpipe.filtering.vocabulary import RareTexts

BATCH_ROWS = 65_536  # pairs per batch: one parquet chunk, or one shard's records in order
MAX_JOIN_BUCKETS = 1024  # at most this many pieces per batch and join (see `join_buckets`)
REASON = "reason"  # the column of a decided batch: index in REASONS, or KEPT
STRING = pd.StringDtype("pyarrow")  # the text columns of a batch
TEXT_COLUMNS = ("sha256", "text", "image_url", "page_url")
_FLAGGED_RULES = ("image_too_many_alts", "text_shared_by_too_many_images", "text_rare_token")


def join_buckets(input_files: int) -> int:
    """The buckets of `DecideBatches`' joins for a corpus of `input_files` files: one per file
    (a bucket near a file's size), at most `MAX_JOIN_BUCKETS`, so that a corpus of many small
    files is not cut into pieces of a few rows (one Beam element each); at 1B pairs a bucket
    then holds about 1M rows."""
    return max(1, min(input_files, MAX_JOIN_BUCKETS))


def with_alt_texts(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` (the columns of `PairMeta`) as a batch frame: its text columns as `STRING`, its
    shard categorical, and the `alt` column added, each distinct raw text normalised once."""
    types = {name: STRING for name in TEXT_COLUMNS if frame[name].dtype != STRING}
    frame = frame.astype(types | ({} if frame["shard"].dtype == "category" else {"shard": "category"}))
    raw_ids, raw_texts = pd.factorize(frame["text"])  # a null text (-1) normalises to ""
    normalised = pd.array([normalise_alt_text(text) for text in raw_texts] + [""], dtype=STRING)
    return frame.assign(alt=normalised.take(raw_ids))


def batch_of_metas(metas: list[PairMeta]) -> pd.DataFrame:
    """`PairMeta` records as a batch frame (`phash` kept as object: unsigned 64-bit ints)."""
    frame = pd.DataFrame.from_records(metas, columns=METADATA_COLUMNS)
    frame["phash"] = pd.Series([meta.phash for meta in metas], dtype=object)
    return with_alt_texts(frame)


def metas_of_batch(frame: pd.DataFrame) -> Iterator[PairMeta]:
    """The rows of a batch frame as `PairMeta` (the pHash unsigned, None when null)."""
    columns = [frame[name].tolist() for name in METADATA_COLUMNS]
    for row in zip(*columns, strict=True):
        meta = PairMeta(*row)
        phash = meta.phash
        yield meta._replace(phash=None if phash is None or phash != phash else int(phash) & UINT64)


def decided_pairs(element: pd.DataFrame) -> Iterator[tuple[PairMeta, str | None]]:
    """A decided batch as (meta, reason or None) per pair, for the consumers that need records."""
    names = [*REASONS, None]
    for meta, code in zip(metas_of_batch(element), element[REASON].tolist(), strict=True):
        yield meta, names[code]


def dropped_lines(frame: pd.DataFrame) -> list[str]:
    """The `dropped-*.jsonl` lines of a decided batch's dropped pairs (one string, or none)."""
    dropped = frame[frame[REASON] != KEPT]
    if not len(dropped):
        return []
    # json.dumps(row, ensure_ascii=False) of each row's dict, its strings encoded column by column
    columns = [
        map(encode_basestring, dropped[c].tolist()) for c in ("image_url", "page_url", "sha256", "text")
    ]
    reasons = np.array([encode_basestring(r) for r in REASONS], dtype=object)[dropped[REASON].to_numpy()]
    rows = zip(*columns, reasons.tolist(), strict=True)
    return [
        "\n".join(
            f'{{"image_url": {u}, "page_url": {p}, "sha256": {h}, "text": {t}, "reason": {r}}}'
            for u, p, h, t, r in rows
        )
    ]


def outcome_counts(frame: pd.DataFrame) -> np.ndarray:
    """Pairs per outcome code of a decided batch, int array of shape [len(REASONS) + 1]."""
    return np.bincount(frame[REASON].to_numpy(np.int64), minlength=KEPT + 1)


def kept_pairs_stats(frame: pd.DataFrame) -> CorpusStatsAccumulator:
    """The statistics (`stats.CorpusStatsAccumulator`) of a decided batch's kept pairs."""
    kept = frame[frame[REASON] == KEPT]
    accumulator = CorpusStatsAccumulator()
    accumulator.add_frame(*(kept[c] for c in ("text", "sha256", "width", "height", "alt")))
    return accumulator


class SummariseBatch(beam.DoFn):
    """A decided batch -> its outcome counts (`outcome_counts`), and as tagged outputs its
    dropped pairs' lines ("dropped", `dropped_lines`) and its kept pairs' statistics ("stats",
    `kept_pairs_stats`): one consumer of the batch instead of three."""

    def process(self, frame: pd.DataFrame):
        yield outcome_counts(frame)
        for lines in dropped_lines(frame):
            yield beam.pvalue.TaggedOutput("dropped", lines)
        yield beam.pvalue.TaggedOutput("stats", kept_pairs_stats(frame))


class _KeysOfBatch(beam.DoFn):
    """A `PairBatch` -> its pairs per normalised alt-text (a Series indexed by the text), and as
    tagged outputs its `bucket_pieces` by image ("image_pieces") and by alt-text ("text_pieces"):
    one consumer of the batch besides the final join, instead of three."""

    def __init__(self, buckets: int):
        self.buckets = buckets

    def process(self, batch):
        batch_id, frame = batch
        yield frame["alt"].value_counts(sort=False)
        for piece in bucket_pieces(batch_id, frame, "sha256", "alt", self.buckets):
            yield beam.pvalue.TaggedOutput("image_pieces", piece)
        for piece in bucket_pieces(batch_id, frame, "alt", "sha256", self.buckets):
            yield beam.pvalue.TaggedOutput("text_pieces", piece)


class _DecideBatch(beam.DoFn):
    """(batch id, {"pairs": [frame], "flags": [(rule, rows)]}) -> the frame with `REASON`."""

    def __init__(self, cfg: FilterConfig, words: UnsafeWordList):
        self.cfg, self.words = cfg, words

    def process(self, element, eval_index, unsafe_index):
        _, grouped = element
        for frame in grouped["pairs"]:
            flagged = {rule: np.zeros(len(frame), dtype=bool) for rule in _FLAGGED_RULES}
            for rule, rows in grouped["flags"]:
                flagged[rule][rows] = True
            text_ids, texts = pd.factorize(frame["alt"])
            codes = outcome_codes(
                frame, text_ids, list(texts), flagged, self.cfg, eval_index, unsafe_index, self.words
            )
            yield frame.assign(**{REASON: codes})


class DecideBatches(beam.PTransform):
    """`PairBatch`es -> decided batches: each frame with `REASON`, the first rule it fails.

    Args:
        cfg: the thresholds, and `hot_key_pairs` (see `vocabulary.RareTexts`).
        eval_index: a singleton PCollection of the evaluation images' `PHashIndex`.
        unsafe_index: a singleton PCollection of the blocklist's `PHashIndex`.
        words: the `text_unsafe` rule's list (empty: rule off).
        buckets: pieces each batch is cut into per join; about 1 / buckets of the corpus meets
            on one worker (`join_buckets`).
    """

    def __init__(
        self,
        cfg: FilterConfig,
        eval_index,
        unsafe_index,
        words: UnsafeWordList = NO_UNSAFE_WORDS,
        buckets: int = 16,
    ):
        super().__init__()
        self.cfg, self.eval_index, self.unsafe_index, self.words = cfg, eval_index, unsafe_index, words
        self.buckets = buckets

    def expand(self, batches):
        cfg, buckets = self.cfg, self.buckets
        keys = batches | "Keys" >> beam.ParDo(_KeysOfBatch(buckets)).with_outputs(
            "image_pieces", "text_pieces", main="text_counts"
        )
        rare_texts = keys.text_counts | "RareTexts" >> RareTexts(
            cfg.rare_token_vocab_size, cfg.rare_token_min_word_share, cfg.hot_key_pairs, buckets
        )
        image_flags = (
            keys.image_pieces
            | "ByImageBucket" >> beam.GroupByKey()
            | "ImagesOverCap" >> beam.ParDo(KeysOverCap("image_too_many_alts", cfg.max_alts_per_image))
        )
        text_pieces = keys.text_pieces
        listed = rare_texts | "RareByBucket" >> beam.Map(
            lambda text: (int(key_buckets([text], buckets)[0]), text)
        )
        text_flags = (
            {"pieces": text_pieces, "listed": listed}
            | "ByTextBucket" >> beam.CoGroupByKey()
            | "TextsOverCap"
            >> beam.ParDo(
                KeysOverCap(
                    "text_shared_by_too_many_images", cfg.max_images_per_alt, listed="text_rare_token"
                )
            )
        )
        flags = (image_flags, text_flags) | "Flags" >> beam.Flatten()
        return (
            {"pairs": batches, "flags": flags}
            | "WithFlags" >> beam.CoGroupByKey()
            | "DecideBatch"
            >> beam.ParDo(
                _DecideBatch(cfg, self.words),
                beam.pvalue.AsSingleton(self.eval_index),
                beam.pvalue.AsSingleton(self.unsafe_index),
            )
        )
