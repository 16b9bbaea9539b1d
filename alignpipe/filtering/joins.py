"""Beam building blocks for corpus statistics whose cost does not grow with a key's popularity.

Web data is skewed: one boilerplate alt-text ("logo") sits on millions of pages, one spacer
image carries thousands of alt-texts, the token "the" is in most texts. A GroupByKey sends
all of a key's elements to one worker; these transforms never do that for a popular key:
`KeysOverCap` groups buckets of keys (`bucket_pieces`) and counts them with Arrow and numpy,
`AttachStats` sends a popular key's statistics through a side input.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import apache_beam as beam
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from alignpipe.filtering.columns import arrow_array, concatenated, factorized


def key_buckets(keys: Sequence[str], buckets: int) -> np.ndarray:
    """Per key, its bucket in [0, buckets), int array: a stable hash, the same on every worker."""
    # SipHash with a fixed key; `categorize` (hash the distinct keys once) only changes the speed,
    # and factorizing first costs more than hashing every key
    hashes = pd.util.hash_array(np.asarray(keys, dtype=object), categorize=False)
    return (hashes % np.uint64(buckets)).astype(np.int64)


def bucket_pieces(batch_id, frame: pd.DataFrame, key: str, value: str, buckets: int) -> Iterator[tuple]:
    """A batch of rows cut by the bucket of its `key` column.

    Yields:
        (bucket, (batch_id, rows, keys, values)) per bucket that has rows: `rows` the rows'
        positions in `frame` (int array), `keys` and `values` their `key` and `value` columns
        as Arrow arrays (a piece crosses a shuffle: Arrow buffers encode as a copy).
    """
    keys, values = arrow_array(frame[key]), arrow_array(frame[value])
    for bucket, rows in rows_by_bucket(keys, buckets):
        yield bucket, (batch_id, rows, keys.take(rows), values.take(rows))


def rows_by_bucket(keys: Sequence[str], buckets: int) -> Iterator[tuple[int, np.ndarray]]:
    """(bucket, the positions of its keys, int array in their order) per bucket of `key_buckets`
    that has keys."""
    of_key = key_buckets(keys, buckets)
    order = np.argsort(of_key, kind="stable")
    bounds = np.searchsorted(of_key[order], np.arange(buckets + 1))
    for bucket in range(buckets):
        rows = order[bounds[bucket] : bounds[bucket + 1]]
        if len(rows):
            yield bucket, rows


class KeysOverCap(beam.DoFn):
    """(bucket, pieces of `bucket_pieces`) -> (batch id, (rule, rows)) for the rows whose key
    has more than `most` distinct values in the whole bucket (so in the corpus).

    The bucket's pieces are counted (`keys_over`) in chunks reduced to at most `most` + 1
    values per key (a rule only asks whether a count exceeds its threshold), so a key's
    popularity (an alt-text on millions of pages) costs no memory and the group is never held
    whole; a second pass over the pieces names the rows. With `listed`
    (a rule name) the element is (bucket, {"pieces": ..., "listed": keys}) and the rows of a
    listed key are also flagged, under `listed`.
    """

    def __init__(self, rule: str, most: int, listed: str = ""):
        self.rule, self.most, self.listed = rule, most, listed

    def process(self, element) -> Iterator[tuple]:
        _, grouped = element
        pieces, listed = (grouped["pieces"], list(grouped["listed"])) if self.listed else (grouped, [])
        over = keys_over(((keys, values) for _, _, keys, values in pieces), self.most)
        flags = [(rule, keys) for rule, keys in ((self.rule, over), (self.listed, listed)) if len(keys)]
        value_sets: dict = {}  # (rule, type of the keys) -> the flagged keys as that type
        for batch_id, rows, keys, _ in pieces:
            keys = arrow_array(keys)
            if keys.type == pa.null():  # a piece of null keys only: keys are strings
                keys = keys.cast(pa.large_string())
            for rule, flagged in flags:
                if (rule, keys.type) not in value_sets:
                    value_sets[rule, keys.type] = pa.array(flagged, type=keys.type)
                hit = pc.is_in(keys, value_set=value_sets[rule, keys.type]).to_numpy(zero_copy_only=False)
                if hit.any():
                    yield batch_id, (rule, rows[hit])


COMPACT_ROWS = 1 << 20  # rows of (key, value) held before `keys_over` drops what it does not need


def keys_over(pieces: Iterable[tuple], most: int) -> list:
    """The keys with more than `most` distinct values over all (keys, values) pieces, each a
    pair of arrays of one length (Arrow arrays, or anything `pyarrow.array` reads); `None` is
    a key or value like any other.

    Pieces are gathered up to `COMPACT_ROWS` rows, then reduced to their distinct pairs with at
    most `most` + 1 values per key: memory stays within that budget plus the capped table,
    however many rows one key has.
    """
    held: list[tuple[pa.Array, pa.Array]] = []
    rows = 0
    for keys, values in pieces:
        held.append((arrow_array(keys), arrow_array(values)))
        rows += len(keys)
        if rows > COMPACT_ROWS:
            held = [_capped(held, most)]
            rows = len(held[0][0])
    if not held:
        return []
    keys, _ = _capped(held, most)
    key_ids, distinct = factorized(keys)
    return distinct.filter(np.bincount(key_ids, minlength=len(distinct)) > most).to_pylist()


def _capped(pieces: list[tuple[pa.Array, pa.Array]], most: int) -> tuple[pa.Array, pa.Array]:
    """The distinct (key, value) pairs of `pieces`, at most `most` + 1 per key (in first-seen
    order), as (keys, values)."""
    key_ids, keys = factorized(concatenated([k for k, _ in pieces]))
    value_ids, values = factorized(concatenated([v for _, v in pieces]))
    width = max(len(values), 1)
    pairs = pd.unique(key_ids * width + value_ids)  # distinct, first-seen order
    pair_keys = pairs // width
    order = np.argsort(pair_keys, kind="stable")
    sorted_keys = pair_keys[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    kept = np.sort(order[rank <= most])
    return keys.take(pair_keys[kept]), values.take(pairs[kept] % width)


class _SplitHot(beam.DoFn):
    """(key, value) -> (value, stats) for a hot key (stats from the side input), or
    ("cold", (key, value)) for a key to join."""

    def process(self, element, hot_stats: dict):
        key, value = element
        if key in hot_stats:
            yield value, hot_stats[key]
        else:
            yield beam.pvalue.TaggedOutput("cold", element)


def _joined(element, default) -> Iterator[tuple]:
    _, grouped = element
    stats = next(iter(grouped["stats"]), default)
    for value in grouped["values"]:
        yield value, stats


class AttachStats(beam.PTransform):
    """(key, value) elements -> (value, the key's stats), joining a table of one stats row per key.

    A join groups every element of a key on one worker, and a key such as a boilerplate
    alt-text ("logo") or the token "the" has millions. Here a key with more than `hot`
    elements (counted with a combiner) takes its stats from a side input instead: at most
    (elements / `hot`) rows, so no group, and no side input, grows with a key's popularity.

    Args:
        stats: PCollection of (key, stats), at most one per key.
        default: the stats of a key missing from the table.
        hot: elements a key may have before its stats come from the side input.
    """

    def __init__(self, stats, default, hot: int):
        super().__init__()
        self.stats, self.default, self.hot = stats, default, hot

    def expand(self, keyed):
        hot = self.hot
        hot_keys = (
            keyed
            | "KeyOnly" >> beam.Map(lambda kv: (kv[0], 1))
            | "CountPerKey" >> beam.CombinePerKey(sum)
            | "HotKeys" >> beam.Filter(lambda kv: kv[1] > hot)
        )
        hot_stats = (
            {"count": hot_keys, "stats": self.stats}
            | "JoinHotStats" >> beam.CoGroupByKey()
            | "HotStats"
            >> beam.FlatMap(
                lambda kv, default: [(kv[0], next(iter(kv[1]["stats"]), default))] if kv[1]["count"] else [],
                self.default,
            )
        )
        split = keyed | "SplitHot" >> beam.ParDo(_SplitHot(), beam.pvalue.AsDict(hot_stats)).with_outputs(
            "cold", main="hot"
        )
        joined = (
            {"values": split.cold, "stats": self.stats}
            | "Join" >> beam.CoGroupByKey()
            | "Attach" >> beam.FlatMap(_joined, self.default)
        )
        return (split.hot, joined) | "HotAndJoined" >> beam.Flatten()
