"""The filter's decisions on batches of pairs: few, fat Beam elements instead of one per pair.

Beam's Python runners spend microseconds on every element handed from one transform to the
next, and a combine or a join costs tens of microseconds per key, whatever the element's size;
the rules themselves cost less than that. So the filter moves pairs as batches: a `PairBatch`
is `(batch id, frame)`, the frame a pandas DataFrame of up to `BATCH_ROWS` pairs with the
columns of `PairMeta`, `alt` (the normalised alt-text) added; `phash` is unsigned or signed
as read, null when the image does not decode.

The corpus rules ask per key (image, normalised alt-text) whether it has more than a threshold
of distinct partners. `DecideBatches` answers them with joins whose elements are batches too:
each pair batch is cut into `buckets` pieces by a stable hash of the key (`joins.key_buckets`),
one GroupByKey per bucket brings every row of that bucket's keys together, and `KeysOverCap`
counts each key's distinct partners, capped one past the threshold, then names the rows of the
keys over it. A bucket holds about 1 / `buckets` of the corpus and a key's count never more
than the cap, so a popular key ("logo") costs no more memory than any other. The flagged rows
go back to their batch (a join on the batch id) and the rules are applied to the whole batch at
once (`reference.outcome_codes`, the vectorised rules the pandas reference applies).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import apache_beam as beam
import numpy as np
import pandas as pd

from alignpipe.config import FilterConfig
from alignpipe.data.records import UINT64
from alignpipe.filtering.facts import METADATA_COLUMNS, PairMeta
from alignpipe.filtering.joins import KeysOverCap, bucket_pieces, key_buckets
from alignpipe.filtering.reference import KEPT, outcome_codes
from alignpipe.filtering.rules import NO_UNSAFE_WORDS, REASONS, UnsafeWordList, normalise_alt_text
from alignpipe.filtering.vocabulary import RareTexts

BATCH_ROWS = 65_536  # pairs per batch: one parquet chunk, or one shard's records in order
REASON = "reason"  # the column of a decided batch: index in REASONS, or KEPT
_FLAGGED_RULES = ("image_too_many_alts", "text_shared_by_too_many_images", "text_rare_token")


def with_alt_texts(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with the `alt` column added: each distinct raw text normalised once."""
    raw_ids, raw_texts = pd.factorize(frame["text"])
    normalised = np.array([normalise_alt_text(text) for text in raw_texts] + [""], dtype=object)
    return frame.assign(alt=normalised[raw_ids])


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
    rows = zip(
        *(dropped[c].tolist() for c in ("image_url", "page_url", "sha256", "text")),
        np.array(REASONS, dtype=object)[dropped[REASON].to_numpy()].tolist(),
        strict=True,
    )
    keys = ("image_url", "page_url", "sha256", "text", "reason")
    return ["\n".join(json.dumps(dict(zip(keys, row, strict=True)), ensure_ascii=False) for row in rows)]


def outcome_counts(frame: pd.DataFrame) -> np.ndarray:
    """Pairs per outcome code of a decided batch, int array of shape [len(REASONS) + 1]."""
    return np.bincount(frame[REASON].to_numpy(np.int64), minlength=KEPT + 1)


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
            on one worker (one per input file keeps a bucket near a file's size).
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
        rare_texts = (
            batches
            | "TextCounts" >> beam.MapTuple(lambda _, frame: frame["alt"].value_counts().to_dict())
            | "RareTexts"
            >> RareTexts(cfg.rare_token_vocab_size, cfg.rare_token_min_word_share, cfg.hot_key_pairs, buckets)
        )
        image_flags = (
            batches
            | "ImagePieces" >> beam.FlatMap(lambda batch: bucket_pieces(*batch, "sha256", "alt", buckets))
            | "ByImageBucket" >> beam.GroupByKey()
            | "ImagesOverCap" >> beam.ParDo(KeysOverCap("image_too_many_alts", cfg.max_alts_per_image))
        )
        text_pieces = batches | "TextPieces" >> beam.FlatMap(
            lambda batch: bucket_pieces(*batch, "alt", "sha256", buckets)
        )
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
