#!/usr/bin/env python3
"""The filter's reading of pair shards against tfx-bsl's TFXIO, on the same records.

    PYTHONPATH=. python bench/tfxio_decode.py [--records 20000] [--alts-per-image 4] [--rounds 3]

Writes one GZIP TFRecord shard per scrape mode with the project's own writer
(`ImageTextPair.to_example`, `TFRecordWriter`): random scenes rendered as JPEGs of 300 to
480 pixels a side, put through `describe_image` as the scrape does, each image with
`--alts-per-image` consecutive records (distinct alt-texts and page URLs). Modes:
  resized   `scrape.resize_mode=keep_ratio`, 256: the records carry the pHash and the original
            size, so reading a record decodes no image
  original  `scrape.resize_mode=no` (the default): the downloaded bytes, no pHash, so every
            distinct image is decoded (PIL) for its size and pHash
Then each path turns the shard into the filter's batch frames (`batches.batch_of_metas`: the
columns of `PairMeta` and `alt`), in batches of `BATCH_ROWS`:
  filter        `iter_tfrecords` + `pipeline.pair_metadata` per record (the protobuf parse of
                `example_proto.Example`) + `batch_of_metas` (what `_ReadShardMetadata` does)
  tfxio         `iter_tfrecords` + tfx-bsl's `ExamplesToRecordBatchDecoder` (C++: serialized
                `tf.Example`s to an Arrow RecordBatch, with a schema of the features the filter
                reads, `image/encoded` included for the records without a pHash) + Arrow
                compute to the same frame, the images without a pHash decoded as the filter does
  tfxio-tfdata  the same, the records read by `TFExampleRecord.RecordBatches` (tf.data)
  tfxio-noimage `tfxio` without `image/encoded` in the schema: what the decoder costs when it
                copies no image bytes; it reads only shards whose every record has a pHash
                (resized mode), so it is no replacement, only a bound
Every path's frames are checked equal to the filter's (`pandas.testing.assert_frame_equal`).
Each path runs `--rounds` times, in turns; the figure is the best round's CPU seconds of this
process (`time.process_time`), printed with its wall seconds, records per CPU-second and the
ratio to the filter path. tfx-bsl is not a dependency of the project: install it beside it
first (`pip install tfx-bsl==1.21.0`, docs/dependencies.md).
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx_bsl.coders.example_coder import ExamplesToRecordBatchDecoder

from alignpipe.data.records import UINT64, ImageTextPair, TFRecordWriter, iter_tfrecords
from alignpipe.demo.scenes import caption, encode, random_scene, render
from alignpipe.errors import InputError
from alignpipe.filtering.batches import BATCH_ROWS, STRING, batch_of_metas, with_alt_texts
from alignpipe.filtering.facts import METADATA_COLUMNS
from alignpipe.filtering.pipeline import decode_image_facts, pair_metadata
from alignpipe.imaging.decode import describe_image

MODES = {"resized": "keep_ratio", "original": "no"}
BYTES_FEATURES = ("image/sha256", "text", "image/url", "page/url", "image/encoded")
INT_FEATURES = ("image/phash", "image/original_width", "image/original_height")
SIDES = (300, 360, 400, 480)


def write_shard(path: str, records: int, alts_per_image: int, resize_mode: str, seed: int) -> int:
    """Writes `records` pairs into a GZIP TFRecord shard at `path`; returns the file's bytes."""
    rng = random.Random(seed)
    with open(path, "wb") as file:
        writer = TFRecordWriter(file)
        for image_number in range(-(-records // alts_per_image)):
            scene = random_scene(rng)
            size = (rng.choice(SIDES), rng.choice(SIDES))
            downloaded = encode(render(scene, size), "jpeg")
            facts = describe_image(downloaded, resize_mode, 256)
            data = downloaded if facts.encoded is None else facts.encoded
            image_url = f"https://images.example.org/{image_number:07d}.jpg"
            for alt in range(min(alts_per_image, records - writer.records)):
                pair = ImageTextPair(
                    data,
                    facts.image_format,
                    facts.width,
                    facts.height,
                    facts.sha256,
                    f"{caption(scene, rng)} {alt}",
                    image_url,
                    f"https://www.example.org/page/{image_number:07d}-{alt}.html",
                    facts.original_width,
                    facts.original_height,
                    facts.phash,
                )
                writer.write(pair.to_example())
        writer.close()
    return os.path.getsize(path)


def filter_frames(path: str) -> Iterator[pd.DataFrame]:
    """The filter's own reading of a shard (`_ReadShardMetadata.process`, no NSFW scorer)."""
    decoded: dict[str, tuple] = {}
    metas = []
    with open(path, "rb") as file:
        for index, record in enumerate(iter_tfrecords(file)):
            metas.append(pair_metadata(path, index, record, decoded))
            if len(metas) == BATCH_ROWS:
                yield batch_of_metas(metas)
                metas = []
    if metas:
        yield batch_of_metas(metas)


def tfxio_schema(image_bytes: bool = True) -> schema_pb2.Schema:
    """The TFMD schema of the features the filter reads (the decoder reads no others);
    without `image/encoded` when not `image_bytes`."""
    schema = schema_pb2.Schema()
    for names, kind in ((BYTES_FEATURES, schema_pb2.BYTES), (INT_FEATURES, schema_pb2.INT)):
        for name in names:
            if image_bytes or name != "image/encoded":
                schema.feature.add(name=name, type=kind)
    return schema


def _one_value(batch: pa.RecordBatch, name: str, path: str, first: int) -> pa.Array:
    """The feature's one value per record; an error naming the first record without one."""
    lengths = pc.list_value_length(batch.column(name)).fill_null(0)
    if not pc.all(pc.equal(lengths, 1)).as_py():
        bad = first + pc.index(pc.equal(lengths, 1), False).as_py()
        raise InputError(f"{path}: record {bad} is not an ImageTextPair Example (no single {name!r})")
    return pc.list_flatten(batch.column(name))


def frame_of_record_batch(
    batch: pa.RecordBatch, path: str, first: int, decoded: dict[str, tuple]
) -> pd.DataFrame:
    """A decoded RecordBatch as the filter's batch frame, equal to `batch_of_metas`' one."""
    strings = {
        column: _one_value(batch, feature, path, first).cast(pa.large_string())
        for column, feature in (
            ("sha256", "image/sha256"),
            ("text", "text"),
            ("image_url", "image/url"),
            ("page_url", "page/url"),
        )
    }
    hashes = pc.list_element(batch.column("image/phash"), 0).to_pylist()
    widths = pc.list_element(batch.column("image/original_width"), 0).to_pylist()
    heights = pc.list_element(batch.column("image/original_height"), 0).to_pylist()
    missing = [row for row, value in enumerate(hashes) if value is None]
    if missing:  # the records without a pHash: their image decoded once per SHA-256, as the filter does
        images = _one_value(batch.take(missing), "image/encoded", path, first)
        sha256s = strings["sha256"].take(missing).to_pylist()
        for row, sha256, image in zip(missing, sha256s, images, strict=True):
            if sha256 not in decoded:
                decoded[sha256] = decode_image_facts(image.as_py())[1:]
            widths[row], heights[row], hashes[row] = decoded[sha256]
    frame = pa.table(strings).to_pandas(types_mapper={pa.large_string(): STRING}.get)
    frame["shard"] = path
    frame["index"] = range(first, first + len(frame))
    frame["width"], frame["height"] = widths, heights
    frame["phash"] = pd.Series([None if h is None else h & UINT64 for h in hashes], dtype=object)
    frame["nsfw_score"] = 0.0
    return with_alt_texts(frame[list(METADATA_COLUMNS)])


def tfxio_frames(path: str, image_bytes: bool = True) -> Iterator[pd.DataFrame]:
    """The shard read with `iter_tfrecords`, decoded by tfx-bsl's ExamplesToRecordBatchDecoder."""
    decoder = ExamplesToRecordBatchDecoder(tfxio_schema(image_bytes).SerializeToString())
    decoded: dict[str, tuple] = {}
    first, records = 0, []
    with open(path, "rb") as file:
        for record in iter_tfrecords(file):
            records.append(record)
            if len(records) == BATCH_ROWS:
                yield frame_of_record_batch(decoder.DecodeBatch(records), path, first, decoded)
                first, records = first + len(records), []
    if records:
        yield frame_of_record_batch(decoder.DecodeBatch(records), path, first, decoded)


def tfdata_frames(path: str) -> Iterator[pd.DataFrame]:
    """The shard read and decoded by TFXIO's own `TFExampleRecord` (tf.data under it)."""
    from tfx_bsl.public import tfxio

    source = tfxio.TFExampleRecord(path, schema=tfxio_schema())
    options = tfxio.RecordBatchesOptions(batch_size=BATCH_ROWS, shuffle=False, num_epochs=1)
    decoded: dict[str, tuple] = {}
    first = 0
    for batch in source.RecordBatches(options):
        yield frame_of_record_batch(batch, path, first, decoded)
        first += batch.num_rows


PATHS: dict[str, Callable[[str], Iterator[pd.DataFrame]]] = {
    "filter": filter_frames,
    "tfxio": tfxio_frames,
    "tfxio-tfdata": tfdata_frames,
    "tfxio-noimage": lambda path: tfxio_frames(path, image_bytes=False),
}
# Paths that cannot read every shard: without `image/encoded`, the records without a pHash.
RESIZED_ONLY = ("tfxio-noimage",)


def measure(path: str, rounds: int, names: list[str]) -> dict[str, tuple[float, float]]:
    """{path name: (CPU-s, wall-s) of its best round}; every path's frames checked equal."""
    import tensorflow  # noqa: F401  (tf.data's import, ~4 s, is not the reading's cost)

    reference = list(filter_frames(path))
    for name in names:
        got = list(PATHS[name](path))
        assert len(got) == len(reference), (name, len(got), len(reference))
        for a, b in zip(reference, got, strict=True):
            pd.testing.assert_frame_equal(a, b)
    best: dict[str, tuple[float, float]] = {}
    for _ in range(rounds):
        for name in names:
            cpu, wall = time.process_time(), time.perf_counter()
            for _frame in PATHS[name](path):
                pass
            figure = (time.process_time() - cpu, time.perf_counter() - wall)
            best[name] = min(best.get(name, figure), figure)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--alts-per-image", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"{args.records} records, {args.alts_per_image} per image, best of {args.rounds} rounds")
    print(f"{'mode':9} {'path':14} {'CPU-s':>7} {'wall-s':>7} {'records/CPU-s':>14} {'vs filter':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        for mode, resize_mode in MODES.items():
            path = os.path.join(tmp, f"pairs-{mode}.tfrecord.gz")
            size = write_shard(path, args.records, args.alts_per_image, resize_mode, args.seed)
            names = [n for n in PATHS if mode == "resized" or n not in RESIZED_ONLY]
            figures = measure(path, args.rounds, names)
            for name, (cpu, wall) in figures.items():
                ratio = figures["filter"][0] / cpu
                print(f"{mode:9} {name:14} {cpu:7.2f} {wall:7.2f} {args.records / cpu:14,.0f} {ratio:8.2f}x")
            print(f"{mode:9} shard: {size / 1e6:.1f} MB, frames equal on every path")


if __name__ == "__main__":
    main()
