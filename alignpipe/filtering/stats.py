"""Statistics of a filtered corpus, and how far they moved since the previous run.

`corpus_stats` (plain Python) and `CorpusStatsFn` (a Beam `CombineFn`, for the filter
pipeline) fold `PairMeta` records into the same small JSON-able dict, in bounded memory:

    {"pairs": 900,                       # records folded
     "distinct_images": 870,             # by sha256; KMV sketch, exact below SKETCH_SIZE
     "vocabulary_size": 2400,            # distinct alt-text unigrams; same sketch
     "alt_words": {"mean": 6.1, "p50": 6, "p90": 11,
                   "histogram": {"0": 0, "1": 4, ..., "31": 0, "32+": 2}},
     "image_short_side": {"<=64": 0, "65-128": 12, ..., ">1024": 40},
     "aspect_ratio": {"<1/3": 0, "1/3-1/2": 3, ..., ">=3": 1},   # width / height
     "script": {"Latin": 850, "Cyrillic": 20, ..., "other": 3, "no_letters": 1}}

Alt-text length is in unigrams (`rules.alt_unigrams`); p50 / p90 are nearest-rank
percentiles of the histogram, so "32+" reads as 32. Each alt-text counts once under the
script of most of its letters (`alt_text_script`; ties go to the first script of
`SCRIPTS`), found from Unicode character names; "no_letters" has none (digits only).

`drift_report` compares two such dicts. A histogram's shift is its total-variation
distance, half the L1 distance of the two normalised histograms: the share of the
probability mass that would have to move, in [0, 1], symmetric, and defined with empty
buckets (the population-stability index is not: it divides by them). A count's shift is
its relative change, (current - previous) / max(previous, 1). Every shift whose size
exceeds `max_shift` (`filter.max_stats_drift`) is listed, and `drifted` says whether any is.

Files (`write_stats_json`): `corpus_stats.json` (`STATS_JSON`) and `drift_report.json`
(`DRIFT_JSON`); `plot_stats` draws `corpus_stats.png` (`STATS_PNG`): each histogram as shares
of the pairs, this run's bars beside the previous run's.
"""

from __future__ import annotations

import bisect
import functools
import heapq
import io
import json
import unicodedata
from collections.abc import Iterable
from fractions import Fraction

import apache_beam as beam

from alignpipe import fs
from alignpipe.filtering.facts import PairMeta
from alignpipe.filtering.rules import alt_unigrams, normalise_alt_text

SKETCH_SIZE = 4096  # KMV: exact below this many distinct values, ~1.6% relative error above
ALT_WORDS_OVERFLOW = 32  # alt-texts of this many unigrams or more share the last bucket
SHORT_SIDE_EDGES = (64, 128, 256, 512, 1024)  # upper bounds, inclusive
SHORT_SIDE_BUCKETS = ("<=64", "65-128", "129-256", "257-512", "513-1024", ">1024")
ASPECT_EDGES = (Fraction(1, 3), Fraction(1, 2), Fraction(3, 4), Fraction(4, 3), Fraction(2), Fraction(3))
ASPECT_BUCKETS = ("<1/3", "1/3-1/2", "1/2-3/4", "3/4-4/3", "4/3-2", "2-3", ">=3")  # [low, high)
SCRIPTS = ("Latin", "Cyrillic", "Greek", "Arabic", "Hebrew", "CJK", "Hangul", "Devanagari", "Thai")
SCRIPT_BUCKETS = (*SCRIPTS, "other", "no_letters")
ALT_WORDS_BUCKETS = (*(str(n) for n in range(ALT_WORDS_OVERFLOW)), f"{ALT_WORDS_OVERFLOW}+")
BUCKETS = {
    "alt_words": ALT_WORDS_BUCKETS,
    "image_short_side": SHORT_SIDE_BUCKETS,
    "aspect_ratio": ASPECT_BUCKETS,
    "script": SCRIPT_BUCKETS,
}
HISTOGRAMS = tuple(BUCKETS)
COUNTS = ("pairs", "distinct_images", "vocabulary_size")
STATS_JSON = "corpus_stats.json"
STATS_PNG = "corpus_stats.png"
DRIFT_JSON = "drift_report.json"

# First word of a letter's Unicode name (after FULLWIDTH / HALFWIDTH) -> script.
_NAME_SCRIPTS = {
    **{script.upper(): script for script in SCRIPTS},
    "HIRAGANA": "CJK",
    "KATAKANA": "CJK",
    "BOPOMOFO": "CJK",
    "IDEOGRAPHIC": "CJK",
}


def _hashes64(values: Iterable[str]) -> list[int]:
    """A stable 64-bit hash of each string (pandas' SipHash of its UTF-8, with a fixed key: the
    same on every worker and in every run), computed on the whole array at once."""
    import numpy as np
    import pandas as pd

    return pd.util.hash_array(np.array(list(values), dtype=object), categorize=False).tolist()


class DistinctSketch:
    """A K-minimum-values sketch of the number of distinct strings (Bar-Yossef et al., 2002).

    Keeps the `size` smallest 64-bit hashes seen: the count is exact while fewer distinct
    values arrived, else (size - 1) / (size-th smallest hash / 2**64). The kept hashes
    depend only on the set of values, so sketches merge in any order to the same result.
    """

    def __init__(self, size: int = SKETCH_SIZE):
        self.size = size
        self.hashes: set[int] = set()

    def add(self, value: str) -> None:
        self.add_all([value])

    def add_all(self, values: Iterable[str]) -> None:
        """`add` of each value (distinct or not), pruning once at the end."""
        self.hashes.update(_hashes64(values))
        if len(self.hashes) >= 2 * self.size:
            self._prune()

    def merge(self, other: DistinctSketch) -> None:
        self.hashes |= other.hashes
        self._prune()

    def estimate(self) -> int:
        self._prune()
        if len(self.hashes) < self.size:
            return len(self.hashes)
        return round((self.size - 1) * 2**64 / max(self.hashes))

    def _prune(self) -> None:
        if len(self.hashes) > self.size:
            self.hashes = set(heapq.nsmallest(self.size, self.hashes))


@functools.lru_cache(maxsize=65536)
def _letter_script(char: str) -> str:
    # e.g. "LATIN SMALL LETTER A", "FULLWIDTH LATIN ...", "KATAKANA-HIRAGANA PROLONGED SOUND MARK"
    words = unicodedata.name(char, "").replace("-", " ").split()
    if words and words[0] in ("FULLWIDTH", "HALFWIDTH"):
        words = words[1:]
    return _NAME_SCRIPTS.get(words[0] if words else "", "other")


def alt_text_script(text: str) -> str:
    """The script of most of the text's letters (a `SCRIPT_BUCKETS` entry)."""
    if text.isascii():  # the common case, without a look-up per character
        return "Latin" if any(char.isalpha() for char in text) else "no_letters"
    counts: dict[str, int] = {}
    for char in text:
        if char.isalpha():
            script = _letter_script(char)
            counts[script] = counts.get(script, 0) + 1
    if not counts:
        return "no_letters"
    return max(SCRIPT_BUCKETS, key=lambda s: counts.get(s, 0))


def short_side_bucket(width: int, height: int) -> str:
    """The `SHORT_SIDE_BUCKETS` entry of an image's shorter side."""
    return SHORT_SIDE_BUCKETS[bisect.bisect_left(SHORT_SIDE_EDGES, min(width, height))]


def aspect_ratio_bucket(width: int, height: int) -> str:
    """The `ASPECT_BUCKETS` entry of width / height; a zero height reads as infinitely wide."""
    if height <= 0:
        return ASPECT_BUCKETS[-1]
    return ASPECT_BUCKETS[bisect.bisect_right(ASPECT_EDGES, Fraction(max(width, 0), height))]


class CorpusStatsAccumulator:
    """The running state of `corpus_stats`; memory is bounded by the two sketches."""

    def __init__(self) -> None:
        self.pairs = 0
        self.alt_words_sum = 0
        self.images = DistinctSketch()
        self.vocabulary = DistinctSketch()
        self.alt_words = [0] * (ALT_WORDS_OVERFLOW + 1)
        self.short_side = dict.fromkeys(SHORT_SIDE_BUCKETS, 0)
        self.aspect_ratio = dict.fromkeys(ASPECT_BUCKETS, 0)
        self.script = dict.fromkeys(SCRIPT_BUCKETS, 0)

    def add(self, meta: PairMeta) -> None:
        words = alt_unigrams(meta.text)
        self.pairs += 1
        self.alt_words_sum += len(words)
        self.alt_words[min(len(words), ALT_WORDS_OVERFLOW)] += 1
        self.images.add(meta.sha256)
        for word in set(words):
            self.vocabulary.add(word)
        self.short_side[short_side_bucket(meta.width, meta.height)] += 1
        self.aspect_ratio[aspect_ratio_bucket(meta.width, meta.height)] += 1
        self.script[alt_text_script(meta.text)] += 1

    def add_frame(self, texts, sha256s, widths, heights, alts=None) -> None:
        """`add` of many pairs at once (columns of equal length: Python sequences, numpy or
        Arrow arrays, pandas Series): the same state, with each distinct text, image and word
        handled once and the size buckets computed on arrays.

        `alts`, when given, is each text's `normalise_alt_text` (its unigrams joined by single
        spaces), so the words are split off it instead of found again with the regex.
        """
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        from alignpipe.filtering.columns import alt_words, arrow_array, factorized

        text_ids, distinct_texts = factorized(arrow_array(texts))
        pairs_per_text = np.bincount(text_ids, minlength=len(distinct_texts))
        if alts is None:
            alts_of_text = pa.array([normalise_alt_text(text) for text in distinct_texts.to_pylist()])
        else:  # the alt of each distinct text, from its first pair
            first = np.full(len(distinct_texts), len(text_ids), dtype=np.int64)
            np.minimum.at(first, text_ids, np.arange(len(text_ids)))
            alts_of_text = arrow_array(alts).take(first)
        lengths, words = alt_words(alts_of_text)
        self.pairs += len(text_ids)
        self.alt_words_sum += int((lengths * pairs_per_text).sum())
        buckets = np.bincount(np.minimum(lengths, ALT_WORDS_OVERFLOW), pairs_per_text, ALT_WORDS_OVERFLOW + 1)
        self.alt_words = [a + int(b) for a, b in zip(self.alt_words, buckets, strict=True)]
        self.images.add_all(pc.unique(arrow_array(sha256s)).to_pylist())
        self.vocabulary.add_all(pc.unique(words).to_pylist())
        # an ASCII text is Latin when it has a letter (only A-Z and a-z are alphabetic there)
        ascii_text, latin = (
            test.fill_null(False).to_numpy(zero_copy_only=False)
            for test in (
                pc.string_is_ascii(distinct_texts),
                pc.match_substring_regex(distinct_texts, "[A-Za-z]"),
            )
        )
        self.script["Latin"] += int(pairs_per_text[ascii_text & latin].sum())
        self.script["no_letters"] += int(pairs_per_text[ascii_text & ~latin].sum())
        others = np.flatnonzero(~ascii_text)
        other_texts = distinct_texts.take(others).to_pylist()
        for text, pairs in zip(other_texts, pairs_per_text[others].tolist(), strict=True):
            self.script[alt_text_script(text)] += pairs
        width, height = np.asarray(widths, dtype=np.int64), np.asarray(heights, dtype=np.int64)
        short = np.searchsorted(SHORT_SIDE_EDGES, np.minimum(width, height), side="left")
        # bisect_right(ASPECT_EDGES, width / height), exactly: edges p / q <= width / height.
        wide = np.maximum(width, 0)
        aspect = sum((e.numerator * height <= wide * e.denominator).astype(np.int64) for e in ASPECT_EDGES)
        aspect = np.where(height <= 0, len(ASPECT_EDGES), aspect)
        for counts, names, of_pair in (
            (self.short_side, SHORT_SIDE_BUCKETS, short),
            (self.aspect_ratio, ASPECT_BUCKETS, aspect),
        ):
            for name, pairs in zip(names, np.bincount(of_pair, minlength=len(names)).tolist(), strict=True):
                counts[name] += pairs

    def merge(self, other: CorpusStatsAccumulator) -> None:
        self.pairs += other.pairs
        self.alt_words_sum += other.alt_words_sum
        self.images.merge(other.images)
        self.vocabulary.merge(other.vocabulary)
        self.alt_words = [a + b for a, b in zip(self.alt_words, other.alt_words, strict=True)]
        for mine, theirs in (
            (self.short_side, other.short_side),
            (self.aspect_ratio, other.aspect_ratio),
            (self.script, other.script),
        ):
            for key, count in theirs.items():
                mine[key] += count

    def to_dict(self) -> dict:
        return {
            "pairs": self.pairs,
            "distinct_images": self.images.estimate(),
            "vocabulary_size": self.vocabulary.estimate(),
            "alt_words": {
                "mean": self.alt_words_sum / self.pairs if self.pairs else None,
                "p50": _percentile(self.alt_words, 0.5),
                "p90": _percentile(self.alt_words, 0.9),
                "histogram": dict(zip(ALT_WORDS_BUCKETS, self.alt_words, strict=True)),
            },
            "image_short_side": dict(self.short_side),
            "aspect_ratio": dict(self.aspect_ratio),
            "script": dict(self.script),
        }


def _percentile(histogram: list[int], q: float) -> int | None:
    """Nearest-rank percentile of a histogram over 0, 1, 2, ... (None when empty)."""
    total, seen = sum(histogram), 0
    if not total:
        return None
    for value, count in enumerate(histogram):
        seen += count
        if seen >= q * total:
            return value
    return len(histogram) - 1


def corpus_stats(metas: Iterable[PairMeta]) -> dict:
    """The statistics dict (module docstring) of some pairs, in one pass."""
    accumulator = CorpusStatsAccumulator()
    for meta in metas:
        accumulator.add(meta)
    return accumulator.to_dict()


class CorpusStatsFn(beam.CombineFn):
    """`corpus_stats` as a Beam combiner: `kept | beam.CombineGlobally(CorpusStatsFn())`."""

    def create_accumulator(self) -> CorpusStatsAccumulator:
        return CorpusStatsAccumulator()

    def add_input(self, accumulator: CorpusStatsAccumulator, meta: PairMeta) -> CorpusStatsAccumulator:
        accumulator.add(meta)
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[CorpusStatsAccumulator]) -> CorpusStatsAccumulator:
        merged = CorpusStatsAccumulator()
        for accumulator in accumulators:
            merged.merge(accumulator)
        return merged

    def extract_output(self, accumulator: CorpusStatsAccumulator) -> dict:
        return accumulator.to_dict()


class MergedCorpusStatsFn(CorpusStatsFn):
    """`CorpusStatsFn` over `CorpusStatsAccumulator`s built elsewhere (one per batch of pairs,
    `batches.kept_pairs_stats`), merged."""

    def add_input(
        self, accumulator: CorpusStatsAccumulator, other: CorpusStatsAccumulator
    ) -> CorpusStatsAccumulator:
        accumulator.merge(other)
        return accumulator


def histograms(stats: dict) -> dict[str, dict[str, int]]:
    """The four histograms of a statistics dict, by name, buckets in `BUCKETS` order.

    The order is restored here, so a dict read back from JSON written with sorted keys
    plots the same; buckets this version does not know (an older run's) follow.
    """
    out = {}
    for name in HISTOGRAMS:
        if name in stats:
            raw = stats[name]["histogram"] if name == "alt_words" else stats[name]
            known = [key for key in BUCKETS[name] if key in raw]
            out[name] = {key: raw[key] for key in known + sorted(set(raw) - set(known))}
    return out


def write_stats_json(stats: dict, path: str) -> None:
    """Writes a statistics dict (or a drift report) as JSON, keys in their own order."""
    fs.write_text(path, json.dumps(stats, indent=2, ensure_ascii=False) + "\n")


def read_stats_json(path: str) -> dict:
    return fs.read_json(path)


def total_variation(previous: dict[str, int], current: dict[str, int]) -> float:
    """Half the L1 distance of the normalised histograms (missing buckets count 0).

    0 when both are empty, 1 when exactly one is.
    """
    total_p, total_c = sum(previous.values()), sum(current.values())
    if not total_p or not total_c:
        return 0.0 if total_p == total_c else 1.0
    keys = previous.keys() | current.keys()
    return 0.5 * sum(abs(previous.get(k, 0) / total_p - current.get(k, 0) / total_c) for k in keys)


def drift_report(previous: dict | None, current: dict, max_shift: float) -> dict:
    """How far `current` moved from `previous` (statistics dicts of two runs).

    Args:
        previous: the last run's statistics, or None when there is none.
        current: this run's.
        max_shift: `filter.max_stats_drift`; a shift larger than this is drift.

    Returns:
        `{"baseline": bool, "max_shift": float, "distances": {histogram: TV distance},
        "count_changes": {count: relative change}, "over_max_shift": [names],
        "drifted": bool, "summary": str}`; distances and changes are empty without a baseline.
    """
    if previous is None:
        return {
            "baseline": False,
            "max_shift": max_shift,
            "distances": {},
            "count_changes": {},
            "over_max_shift": [],
            "drifted": False,
            "summary": "no previous run's corpus statistics: no baseline to compare against",
        }
    old, new = histograms(previous), histograms(current)
    distances = {name: round(total_variation(old.get(name, {}), new[name]), 6) for name in new}
    changes = {
        name: round((current[name] - previous.get(name, 0)) / max(previous.get(name, 0), 1), 6)
        for name in COUNTS
    }
    shifts = {**distances, **changes}
    over = [name for name, shift in shifts.items() if abs(shift) > max_shift]
    summary = f"no statistic moved more than {max_shift} since the previous run"
    if over:
        moved = ", ".join(f"{name} {shifts[name]:+.3f}" for name in over)
        summary = f"corpus statistics moved more than {max_shift} since the previous run: {moved}"
    return {
        "baseline": True,
        "max_shift": max_shift,
        "distances": distances,
        "count_changes": changes,
        "over_max_shift": over,
        "drifted": bool(over),
        "summary": summary,
    }


def stats_metrics(stats: dict, report: dict) -> dict[str, float]:
    """Flat numbers for MLflow / kfp metrics: `stats.<name>` and `drift.<name>`."""
    values = {f"stats.{name}": float(stats[name]) for name in COUNTS}
    for name in ("mean", "p50", "p90"):
        if stats["alt_words"][name] is not None:
            values[f"stats.alt_words_{name}"] = float(stats["alt_words"][name])
    values.update({f"drift.{name}": float(v) for name, v in report["distances"].items()})
    values.update({f"drift.{name}_change": float(v) for name, v in report["count_changes"].items()})
    if report["baseline"]:
        values["drift.drifted"] = float(report["drifted"])
    return values


def plot_stats(current: dict, previous: dict | None, path: str) -> None:
    """Draws the four histograms as shares, this run's beside the previous run's, as a PNG.

    Args:
        current: this run's statistics.
        previous: the previous run's, or None (then only this run's bars are drawn).
        path: where to write the PNG (local path or URI).
    """
    # A bare Figure renders with the Agg canvas: no pyplot state, no GUI backend.
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    titles = {
        "alt_words": "alt-text length (unigrams)",
        "image_short_side": "image shorter side (px)",
        "aspect_ratio": "aspect ratio (width / height)",
        "script": "alt-text script",
    }
    new = histograms(current)
    old = histograms(previous) if previous is not None else {}
    fig = Figure(figsize=(12, 8), layout="constrained")
    for ax, name in zip(fig.subplots(2, 2).flat, HISTOGRAMS, strict=True):
        keys = list(new[name]) + [k for k in old.get(name, {}) if k not in new[name]]
        rows = range(len(keys))
        width = 0.4 if old else 0.8
        if old:
            ax.bar([r - width / 2 for r in rows], _shares(old.get(name, {}), keys), width, color="#9a9a9a")
        offset = width / 2 if old else 0
        ax.bar([r + offset for r in rows], _shares(new[name], keys), width, color="#4878a8")
        ax.set_xticks(list(rows), keys, rotation=90 if len(keys) > 12 else 30, fontsize=7)
        ax.set_ylabel("share of pairs")
        shift = f" (TV {total_variation(old[name], new[name]):.3f})" if name in old else ""
        ax.set_title(titles[name] + shift, fontsize=10)
    legend = [Patch(color="#4878a8", label="this run")]
    if old:
        legend.insert(0, Patch(color="#9a9a9a", label="previous run"))
    fig.legend(handles=legend, loc="outside lower center", ncols=2, fontsize=8)
    versus = f" (previous run: {previous['pairs']:,})" if previous is not None else ""
    fig.suptitle(f"Corpus statistics: {current['pairs']:,} pairs{versus}")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    fs.write_bytes(path, buffer.getvalue())


def _shares(histogram: dict[str, int], keys: list[str]) -> list[float]:
    total = sum(histogram.values()) or 1
    return [histogram.get(k, 0) / total for k in keys]
