"""Beam building blocks for corpus statistics whose cost does not grow with a key's popularity.

Web data is skewed: one boilerplate alt-text ("logo") sits on millions of pages, one spacer
image carries thousands of alt-texts, the token "the" is in most texts. A GroupByKey sends
all of a key's elements to one worker; these transforms never do that for a popular key.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import apache_beam as beam


class DistinctUpTo(beam.CombineFn):
    """How many distinct values a key has, counted exactly up to `cap` and then no further.

    A rule only asks whether a count exceeds its threshold, so `cap` = threshold + 1 answers it
    exactly, and no accumulator ever holds more than `cap` values: a key's popularity (an
    alt-text on millions of pages) costs nothing more.
    """

    def __init__(self, cap: int):
        self.cap = cap

    def create_accumulator(self) -> set:
        return set()

    def add_input(self, seen: set, value) -> set:
        if len(seen) < self.cap:
            seen.add(value)
        return seen

    def merge_accumulators(self, accumulators: Iterable[set]) -> set:
        merged: set = set()
        for seen in accumulators:
            for value in seen:
                if len(merged) >= self.cap:
                    return merged
                merged.add(value)
        return merged

    def extract_output(self, seen: set) -> int:
        return len(seen)


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
