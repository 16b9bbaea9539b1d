"""The filter's metadata path: records read once without keeping bytes, capped counts, no second decode."""

from __future__ import annotations

import gzip
import hashlib
import io
import json

import apache_beam as beam
import numpy as np
import pandas as pd
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to
from PIL import Image

from alignpipe.config import IN_PROCESS_RUNNER
from alignpipe.data.records import ImageTextPair, TFRecordWriter, iter_tfrecords, read_tfrecords
from alignpipe.errors import InputError
from alignpipe.filtering import joins
from alignpipe.filtering.batches import MAX_JOIN_BUCKETS, REASON, dropped_lines, join_buckets
from alignpipe.filtering.frame_rules import KEPT
from alignpipe.filtering.joins import AttachStats, KeysOverCap, bucket_pieces, key_buckets, keys_over
from alignpipe.filtering.pipeline import pair_metadata
from alignpipe.filtering.rules import REASONS
from alignpipe.imaging.decode import describe_image
from alignpipe.imaging.phash import hamming, phash
from tests.filtering.conftest import encode, make_scene


def _pair(data: bytes, **kwargs) -> ImageTextPair:
    fields = dict(
        image_bytes=data,
        image_format="png",
        width=64,
        height=64,
        sha256=hashlib.sha256(data).hexdigest(),
        text="a red circle",
        image_url="http://127.0.0.1/a.png",
        page_url="http://127.0.0.1/",
    )
    return ImageTextPair(**(fields | kwargs))


def test_a_record_without_a_phash_is_decoded_once_for_it():
    data = encode(make_scene(1, 90, 60))
    meta = pair_metadata("s", 4, _pair(data).to_example())
    assert (meta.shard, meta.index, meta.width, meta.height) == ("s", 4, 90, 60)
    assert meta.phash == phash(Image.open(io.BytesIO(data)))
    assert pair_metadata("s", 0, _pair(b"not an image").to_example()).phash is None  # undecodable


def test_a_record_with_the_scrapes_phash_is_not_decoded_and_keeps_its_original_size():
    top_bit = (1 << 63) | 5  # stored as a negative int64, read back unsigned
    record = _pair(b"not decoded", original_width=1200, original_height=900, phash=top_bit)
    meta = pair_metadata("s", 0, record.to_example())
    assert (meta.phash, meta.width, meta.height) == (top_bit, 1200, 900)
    assert ImageTextPair.from_example(record.to_example()).phash == top_bit


def test_a_record_that_is_not_a_pair_names_the_shard_and_index():
    with pytest.raises(InputError, match=r"shard-7: record 3 is not an ImageTextPair"):
        pair_metadata("shard-7", 3, b"\x00garbage")


def test_a_resize_at_scrape_records_the_phash_of_the_stored_pixels():
    facts = describe_image(encode(make_scene(2, 800, 600)), "keep_ratio", 256)
    assert facts.encoded is not None and (facts.original_width, facts.width) == (800, 341)
    assert hamming(facts.phash, phash(Image.open(io.BytesIO(facts.encoded)))) <= 2
    assert describe_image(encode(make_scene(2, 800, 600)), "no").phash is None  # not decoded at all


def test_streamed_records_equal_the_whole_file_read_and_a_cut_file_is_an_error():
    buffer = io.BytesIO()
    writer = TFRecordWriter(buffer)
    records = [bytes([i]) * (i * 100) for i in range(1, 30)]
    for record in records:
        writer.write(record)
    writer.close()
    data = buffer.getvalue()
    assert list(iter_tfrecords(io.BytesIO(data))) == read_tfrecords(io.BytesIO(data)) == records
    cut = gzip.compress(gzip.decompress(data)[:-10])
    with pytest.raises(ValueError, match="ends inside a record"):
        list(iter_tfrecords(io.BytesIO(cut)))


def test_keys_over_a_cap_are_flagged_in_every_batch_whatever_a_keys_popularity(
    monkeypatch,
):
    hot = [("logo", f"image-{i}") for i in range(20_000)]
    cold = [("a red circle", "image-1"), ("a red circle", "image-2"), ("a red circle", "image-1")]
    batches = [(f"batch-{n}", pd.DataFrame((hot + cold)[n::3], columns=["alt", "sha256"])) for n in range(3)]
    with beam.Pipeline(options=PipelineOptions([f"--runner={IN_PROCESS_RUNNER}"])) as p:
        flags = (
            p
            | beam.Create(batches)
            | beam.FlatMap(lambda batch: bucket_pieces(*batch, "alt", "sha256", 4))
            | beam.GroupByKey()
            | beam.ParDo(KeysOverCap("shared", 10))
            | beam.MapTuple(lambda batch_id, flagged: (batch_id, flagged[0], len(flagged[1])))
        )
        per_batch = [len([row for row in (hot + cold)[n::3] if row[0] == "logo"]) for n in range(3)]
        assert_that(flags, equal_to([(f"batch-{n}", "shared", per_batch[n]) for n in range(3)]))
    buckets = key_buckets([f"text {i}" for i in range(1000)], 7)
    assert buckets.min() == 0 and buckets.max() == 6  # a stable hash, not Python's salted one
    keys = np.array(["a"] * 9 + ["b"] * 4 + ["c", None, None], dtype=object)
    values = np.array([*range(9), 1, 1, 1, 2, 1, None, 3], dtype=object)  # a: 9, b: 2, c: 1, None: 2
    for budget in (1 << 20, 3):  # one reduction at the end; one after every piece
        monkeypatch.setattr(joins, "COMPACT_ROWS", budget)
        for pieces in ([(keys, values)], [(keys[i : i + 4], values[i : i + 4]) for i in range(0, 16, 4)]):
            assert sorted(keys_over(pieces, 2), key=str) == ["a"]
            assert sorted(keys_over(pieces, 1), key=str) == [None, "a", "b"]
    # a piece whose keys are all null is flagged like the others
    pieces = [("b1", np.arange(2), keys[[14, 15]], values[[0, 1]]), ("b2", np.arange(16), keys, values)]
    flagged = dict(KeysOverCap("over", 2).process((0, pieces)))
    assert flagged["b1"][0] == "over" and flagged["b1"][1].tolist() == [0, 1]
    assert flagged["b2"][1].tolist() == [*range(9), 14, 15]


def test_hot_keys_take_their_stats_from_the_side_input_and_all_elements_get_them():
    elements = [("logo", f"page-{i}") for i in range(50)] + [("a red circle", "p1"), ("no stats", "p2")]
    stats = [("logo", 3), ("a red circle", 1), ("unused", 7)]
    with beam.Pipeline(options=PipelineOptions([f"--runner={IN_PROCESS_RUNNER}"])) as p:
        table = p | "Stats" >> beam.Create(stats)
        joined = p | beam.Create(elements) | AttachStats(table, default=0, hot=10)
        expected = [(f"page-{i}", 3) for i in range(50)] + [("p1", 1), ("p2", 0)]
        assert_that(joined, equal_to(expected))


def test_dropped_lines_are_the_json_of_each_dropped_pair():
    texts = ['a "quoted" \\ /path', "日本語\u2028", "line\nbreak", "kept", "\U0001f600"]
    frame = pd.DataFrame(
        {
            "image_url": [f"http://x/{i}.jpg" for i in range(5)],
            "page_url": ["http://x/"] * 5,
            "sha256": list("abcde"),
            "text": texts,
            REASON: [0, 6, len(REASONS) - 1, KEPT, 8],
        }
    )
    keys = ("image_url", "page_url", "sha256", "text")
    expected = [
        json.dumps({**{k: row[k] for k in keys}, "reason": REASONS[row[REASON]]}, ensure_ascii=False)
        for row in frame.to_dict("records")
        if row[REASON] != KEPT
    ]
    assert dropped_lines(frame) == ["\n".join(expected)]
    assert dropped_lines(frame[frame[REASON] == KEPT]) == []


def test_join_buckets_follow_the_files_up_to_a_cap():
    assert [join_buckets(n) for n in (0, 1, 16)] == [1, 1, 16]
    assert join_buckets(10**6) == MAX_JOIN_BUCKETS
