import json
import random

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

from alignpipe.config import IN_PROCESS_RUNNER
from alignpipe.filtering.facts import PairMeta
from alignpipe.filtering.rules import normalise_alt_text
from alignpipe.filtering.stats import (
    ASPECT_BUCKETS,
    BUCKETS,
    SCRIPT_BUCKETS,
    SHORT_SIDE_BUCKETS,
    CorpusStatsAccumulator,
    CorpusStatsFn,
    DistinctSketch,
    alt_text_script,
    aspect_ratio_bucket,
    corpus_stats,
    drift_report,
    histograms,
    plot_stats,
    read_stats_json,
    short_side_bucket,
    stats_metrics,
    total_variation,
    write_stats_json,
)

WORDS = {
    "Latin": ["red", "dog", "garden", "Straße", "café", "river", "old", "bridge"],
    "Cyrillic": ["красный", "дом", "река", "мост"],
    "Greek": ["σπίτι", "θάλασσα", "ήλιος"],
    "CJK": ["東京", "猫", "さくら", "カメラ"],
    "Hangul": ["서울", "고양이"],
    "Arabic": ["بيت", "قطة"],
}


def _metas(n: int, seed: int = 0, scripts: tuple[str, ...] = tuple(WORDS), long_texts: bool = False):
    """`n` synthetic kept pairs: texts of 1..12 words in a few scripts, images reused now and then."""
    rng = random.Random(seed)
    metas = []
    for index in range(n):
        words = WORDS[rng.choice(scripts)]
        length = rng.randint(8, 40) if long_texts else rng.randint(1, 12)
        text = " ".join(rng.choice(words) for _ in range(length))
        if rng.random() < 0.05:
            text = f"{rng.randint(1, 9999)} {rng.randint(1, 9999)}"  # no letters
        width, height = rng.randint(40, 2000), rng.randint(40, 2000)
        sha = f"{rng.randrange(n // 2 + 1):064x}"  # about every other image is reused
        metas.append(PairMeta("shard-0", index, sha, text, width, height, rng.getrandbits(64)))
    return metas


def test_corpus_stats_of_a_small_hand_counted_corpus():
    metas = [
        PairMeta("s", 0, "a" * 64, "A red dog", 300, 200, 1),
        PairMeta("s", 1, "a" * 64, "a red, red cat!", 300, 200, 1),
        PairMeta("s", 2, "b" * 64, "Красный дом", 64, 1025, 2),
        PairMeta("s", 3, "c" * 64, "1920x1080", 2048, 1536, 3),
    ]
    stats = corpus_stats(metas)
    assert stats["pairs"] == 4
    assert stats["distinct_images"] == 3
    assert stats["vocabulary_size"] == len({"a", "red", "dog", "cat", "красный", "дом", "1920x1080"})
    words = stats["alt_words"]
    assert words["mean"] == (3 + 4 + 2 + 1) / 4 and (words["p50"], words["p90"]) == (2, 4)
    assert {k: v for k, v in words["histogram"].items() if v} == {"1": 1, "2": 1, "3": 1, "4": 1}
    assert stats["image_short_side"] == {
        "<=64": 1,
        "65-128": 0,
        "129-256": 2,
        "257-512": 0,
        "513-1024": 0,
        ">1024": 1,
    }
    assert {k: v for k, v in stats["aspect_ratio"].items() if v} == {"<1/3": 1, "4/3-2": 3}
    assert {k: v for k, v in stats["script"].items() if v} == {"Latin": 3, "Cyrillic": 1}
    assert json.loads(json.dumps(stats)) == stats


def test_empty_corpus():
    stats = corpus_stats([])
    assert stats["pairs"] == stats["distinct_images"] == stats["vocabulary_size"] == 0
    assert stats["alt_words"]["mean"] is None and stats["alt_words"]["p50"] is None


@pytest.mark.parametrize(
    ("text", "script"),
    [
        ("A red dog", "Latin"),
        ("Ｆｕｌｌｗｉｄｔｈ", "Latin"),
        ("Straße café", "Latin"),
        ("Москва 2024", "Cyrillic"),
        ("Ακρόπολη", "Greek"),
        ("القاهرة", "Arabic"),
        ("ירושלים", "Hebrew"),
        ("東京タワー", "CJK"),
        ("さくら", "CJK"),
        ("서울 타워", "Hangul"),
        ("मुंबई", "Devanagari"),
        ("กรุงเทพ", "Thai"),
        ("ქართული", "other"),  # Georgian
        ("Tokyo 東京タワー", "Latin"),  # 5 letters each: a tie goes to the earlier of SCRIPTS
        ("Tokyo 東京スカイツリー", "CJK"),  # 5 Latin letters, 8 CJK ones
        ("1920 x 1080", "Latin"),
        ("1920 1080 !!", "no_letters"),
    ],
)
def test_alt_text_script_is_the_script_of_most_letters(text, script):
    assert alt_text_script(text) == script
    assert script in SCRIPT_BUCKETS


def test_bucket_edges():
    assert [short_side_bucket(s, 5000) for s in (0, 64, 65, 128, 129, 1024, 1025)] == [
        "<=64",
        "<=64",
        "65-128",
        "65-128",
        "129-256",
        "513-1024",
        ">1024",
    ]
    assert [aspect_ratio_bucket(w, 300) for w in (99, 100, 150, 225, 300, 400, 600, 900)] == [
        "<1/3",
        "1/3-1/2",
        "1/2-3/4",
        "3/4-4/3",
        "3/4-4/3",
        "4/3-2",
        "2-3",
        ">=3",
    ]
    assert aspect_ratio_bucket(0, 0) == ">=3" and aspect_ratio_bucket(0, 10) == "<1/3"
    assert set(ASPECT_BUCKETS) >= {aspect_ratio_bucket(w, 7) for w in range(60)}
    assert set(SHORT_SIDE_BUCKETS) == {short_side_bucket(s, s) for s in range(0, 3000, 7)}


def test_distinct_sketch_is_exact_when_small_and_close_when_large():
    sketch = DistinctSketch(size=256)
    for i in range(200):
        sketch.add(f"image-{i % 150}")
    assert sketch.estimate() == 150
    large = DistinctSketch(size=1024)
    for i in range(30_000):
        large.add(f"image-{i % 20_000}")
        assert len(large.hashes) < 2 * 1024  # memory does not grow with the input
    assert large.estimate() == pytest.approx(20_000, rel=0.1)


def test_sketch_merge_does_not_depend_on_the_order():
    parts = [DistinctSketch(size=64) for _ in range(3)]
    for i in range(1000):
        parts[i % 3].add(str(i % 700))
    ab, ba = DistinctSketch(size=64), DistinctSketch(size=64)
    for part in parts:
        ab.merge(part)
    for part in reversed(parts):
        ba.merge(part)
    assert ab.hashes == ba.hashes and ab.estimate() == ba.estimate()
    assert ab.estimate() == pytest.approx(700, rel=0.35)


def test_merged_accumulators_equal_one_pass():
    metas = _metas(300, seed=1)
    chunks = [metas[i::4] for i in range(4)]
    accumulators = []
    for chunk in chunks:
        accumulator = CorpusStatsAccumulator()
        for meta in chunk:
            accumulator.add(meta)
        accumulators.append(accumulator)
    merged = CorpusStatsFn().merge_accumulators(accumulators)
    assert merged.to_dict() == corpus_stats(metas)


@pytest.mark.large
def test_combine_fn_in_a_beam_pipeline_equals_corpus_stats():
    metas = _metas(400, seed=2)
    expected = corpus_stats(metas)
    assert expected["pairs"] == 400 and expected["distinct_images"] < 400
    options = PipelineOptions([f"--runner={IN_PROCESS_RUNNER}", "--direct_num_workers=1"])
    with beam.Pipeline(options=options) as p:
        stats = (
            p | beam.Create(metas, reshuffle=True) | beam.Reshuffle() | beam.CombineGlobally(CorpusStatsFn())
        )
        assert_that(stats, equal_to([expected]))


def test_total_variation():
    assert total_variation({"a": 1, "b": 1}, {"a": 5, "b": 5}) == 0.0
    assert total_variation({"a": 1}, {"b": 3}) == 1.0
    assert total_variation({"a": 3, "b": 1}, {"a": 1, "b": 1}) == pytest.approx(0.25)
    assert total_variation({}, {}) == 0.0 and total_variation({}, {"a": 1}) == 1.0


def test_drift_report_without_a_baseline():
    report = drift_report(None, corpus_stats(_metas(50)), 0.2)
    assert report["baseline"] is False and report["drifted"] is False
    assert "no baseline" in report["summary"]
    assert stats_metrics(corpus_stats(_metas(50)), report).keys() >= {"stats.pairs", "stats.alt_words_p90"}
    assert "drift.drifted" not in stats_metrics(corpus_stats(_metas(50)), report)


def test_drift_report_on_the_same_distribution_is_quiet():
    previous, current = corpus_stats(_metas(400, seed=3)), corpus_stats(_metas(400, seed=4))
    assert drift_report(previous, previous, 0.2)["distances"] == dict.fromkeys(
        ("alt_words", "image_short_side", "aspect_ratio", "script"), 0.0
    )
    report = drift_report(previous, current, 0.2)
    assert report["baseline"] is True and report["drifted"] is False, report
    assert report["over_max_shift"] == [] and max(report["distances"].values()) < 0.2
    assert json.loads(json.dumps(report)) == report


def test_drift_report_names_what_moved():
    previous = corpus_stats(_metas(400, seed=3))
    current = corpus_stats(_metas(200, seed=5, scripts=("Cyrillic", "Greek"), long_texts=True))
    report = drift_report(previous, current, 0.2)
    assert report["drifted"] is True
    assert report["over_max_shift"] == ["alt_words", "script", "pairs", "distinct_images", "vocabulary_size"]
    assert report["distances"]["script"] > 0.5 and report["distances"]["image_short_side"] < 0.2
    assert report["count_changes"]["pairs"] == -0.5
    assert "alt_words" in report["summary"] and "pairs -0.500" in report["summary"]
    metrics = stats_metrics(current, report)
    assert metrics["drift.drifted"] == 1.0 and metrics["drift.pairs_change"] == -0.5
    assert drift_report(previous, current, 1.0)["drifted"] is False


def test_plot_stats_writes_a_png(tmp_path):
    previous = corpus_stats(_metas(200, seed=3))
    current = corpus_stats(_metas(200, seed=5, scripts=("Cyrillic",)))
    for name, baseline in (("with_previous.png", previous), ("alone.png", None)):
        path = tmp_path / "plots" / name
        plot_stats(current, baseline, str(path))
        assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and path.stat().st_size > 10_000


def test_stats_json_round_trips_and_bucket_order_survives_sorted_keys(tmp_path):
    stats = corpus_stats(_metas(100, seed=6))
    write_stats_json(stats, str(tmp_path / "corpus_stats.json"))
    assert read_stats_json(str(tmp_path / "corpus_stats.json")) == stats
    resorted = json.loads(json.dumps(stats, sort_keys=True))
    assert list(resorted["image_short_side"])[0] == "129-256"
    assert {name: list(h) for name, h in histograms(resorted).items()} == {
        name: list(buckets) for name, buckets in BUCKETS.items()
    }
    older = {**resorted, "script": {**resorted["script"], "Klingon": 1}}
    assert list(histograms(older)["script"])[-1] == "Klingon"
    assert drift_report(older, stats, 0.2)["distances"]["script"] == pytest.approx(1 / 101, abs=1e-6)


def test_adding_a_frame_equals_adding_its_pairs_one_by_one():
    metas = _metas(300, seed=6) + [
        PairMeta("s", 0, "z", "", 0, 0, None),  # no words, undecodable size
        PairMeta("s", 1, "y", "1920x1080", 300, 100, 5),  # an aspect ratio exactly on an edge
        PairMeta("s", 2, "y", "1920x1080", 100, 300, 5),
    ]
    one_by_one, at_once, with_alts = (
        CorpusStatsAccumulator(),
        CorpusStatsAccumulator(),
        CorpusStatsAccumulator(),
    )
    for meta in metas:
        one_by_one.add(meta)
    half = len(metas) // 2
    for part in (metas[:half], metas[half:]):
        columns = (
            [m.text for m in part],
            [m.sha256 for m in part],
            [m.width for m in part],
            [m.height for m in part],
        )
        at_once.add_frame(*columns)
        with_alts.add_frame(*columns, alts=[normalise_alt_text(m.text) for m in part])
    for accumulator in (at_once, with_alts):
        assert accumulator.to_dict() == one_by_one.to_dict()
        assert accumulator.images.hashes == one_by_one.images.hashes
        assert accumulator.vocabulary.hashes == one_by_one.vocabulary.hashes
