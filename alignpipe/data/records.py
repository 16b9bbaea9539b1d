"""The (image, alt-text) pair record shared by scrape, filter and train.

Pairs are stored as `tf.train.Example`s in sharded TFRecord files
(`<dir>/pairs-*.tfrecord.gz`, GZIP-compressed). Features:

| key                   | type   | meaning                                          |
|-----------------------|--------|--------------------------------------------------|
| image/encoded         | bytes  | the image file (as downloaded, or resized)       |
| image/format          | bytes  | `jpeg`, `png`, `gif`, `webp`, `bmp`              |
| image/width           | int64  | pixels of `image/encoded`                        |
| image/height          | int64  | pixels of `image/encoded`                        |
| image/original_width  | int64  | pixels of the image as downloaded                |
| image/original_height | int64  | pixels of the image as downloaded                |
| image/sha256          | bytes  | hex SHA-256 of the bytes as downloaded           |
| image/phash           | int64  | pHash of `image/encoded` (two's complement), only |
|                       |        | when the scrape decoded the pixels (a resize)    |
| text                  | bytes  | the alt-text, UTF-8, whitespace-normalised       |
| image/url             | bytes  | absolute URL the image was downloaded from       |
| page/url              | bytes  | URL of the page whose `<img alt>` gave the text  |

Writing needs no TensorFlow: the Example messages come from a wire-compatible copy of
TensorFlow's `example.proto` (`alignpipe.data.example_proto`) and `TFRecordWriter`
frames them, so the scrape workers never import TensorFlow.
"""

from __future__ import annotations

import dataclasses
import gzip
import struct
from collections.abc import Iterator
from typing import BinaryIO

import google_crc32c

from alignpipe.data.example_proto import Example

SHARD_PREFIX = "pairs"
SHARD_SUFFIX = ".tfrecord.gz"
COMPRESSION = "GZIP"


@dataclasses.dataclass(frozen=True)
class ImageTextPair:
    """One scraped (image, alt-text) pair; `original_*` default to the stored size."""

    image_bytes: bytes
    image_format: str
    width: int
    height: int
    sha256: str
    text: str
    image_url: str
    page_url: str
    original_width: int = 0
    original_height: int = 0
    phash: int | None = None

    def to_example(self) -> bytes:
        """Serialises to `tf.train.Example` bytes with the schema above."""
        example = Example()
        feature = example.features.feature
        for key, value in (
            ("image/encoded", self.image_bytes),
            ("image/format", self.image_format),
            ("image/sha256", self.sha256),
            ("text", self.text),
            ("image/url", self.image_url),
            ("page/url", self.page_url),
        ):
            feature[key].bytes_list.value.append(value.encode("utf-8") if isinstance(value, str) else value)
        for key, value in (
            ("image/width", self.width),
            ("image/height", self.height),
            ("image/original_width", self.original_width or self.width),
            ("image/original_height", self.original_height or self.height),
        ):
            feature[key].int64_list.value.append(value)
        if self.phash is not None:
            feature["image/phash"].int64_list.value.append(to_int64(self.phash))
        return example.SerializeToString()

    @classmethod
    def from_example(cls, data: bytes) -> ImageTextPair:
        f = Example.FromString(data).features.feature

        def s(k: str) -> str:
            return f[k].bytes_list.value[0].decode("utf-8")

        def i(k: str, default: int = 0) -> int:
            return int(f[k].int64_list.value[0]) if k in f else default

        return cls(
            image_bytes=f["image/encoded"].bytes_list.value[0],
            image_format=s("image/format"),
            width=i("image/width"),
            height=i("image/height"),
            sha256=s("image/sha256"),
            text=s("text"),
            image_url=s("image/url"),
            page_url=s("page/url"),
            original_width=i("image/original_width", i("image/width")),
            original_height=i("image/original_height", i("image/height")),
            phash=i("image/phash") & UINT64 if "image/phash" in f else None,
        )


UINT64 = (1 << 64) - 1


def to_int64(value: int) -> int:
    """An unsigned 64-bit value (a pHash) as the signed int64 that protobuf and parquet store."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _masked_crc(data: bytes) -> bytes:
    crc = google_crc32c.value(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


class TFRecordWriter:
    """Writes TFRecord framing (length, masked CRC-32C, data, masked CRC-32C), GZIP-compressed,
    into an open binary file; readable by `tf.data.TFRecordDataset(path, "GZIP")`."""

    def __init__(self, file: BinaryIO) -> None:
        self._gzip = gzip.GzipFile(fileobj=file, mode="wb", compresslevel=0)  # images are compressed already
        self.records = 0

    def write(self, record: bytes) -> None:
        length = struct.pack("<Q", len(record))
        self._gzip.write(length + _masked_crc(length) + record + _masked_crc(record))
        self.records += 1

    def close(self) -> None:
        self._gzip.close()


def iter_tfrecords(file: BinaryIO) -> Iterator[bytes]:
    """The records of a GZIP TFRecord file, one at a time (no CRC check)."""
    stream = gzip.GzipFile(fileobj=file)
    while header := stream.read(12):
        if len(header) < 12:
            raise ValueError("a TFRecord file ends inside a record header")
        (length,) = struct.unpack_from("<Q", header)
        record = stream.read(length)
        if len(record) < length or len(stream.read(4)) < 4:
            raise ValueError("a TFRecord file ends inside a record")
        yield record


def read_tfrecords(file: BinaryIO) -> list[bytes]:
    """The records of a GZIP TFRecord file (no CRC check; for tests and small reads)."""
    data = gzip.GzipFile(fileobj=file).read()
    out, pos = [], 0
    while pos < len(data):
        (length,) = struct.unpack_from("<Q", data, pos)
        out.append(data[pos + 12 : pos + 12 + length])
        pos += 16 + length
    return out


def shard_pattern(directory: str) -> str:
    """Glob matching every pair shard written into `directory`."""
    return f"{directory.rstrip('/')}/{SHARD_PREFIX}-*{SHARD_SUFFIX}"


def shard_prefix(directory: str) -> str:
    """`file_path_prefix` for Beam's `WriteToTFRecord` (with `SHARD_SUFFIX`)."""
    return f"{directory.rstrip('/')}/{SHARD_PREFIX}"


def __getattr__(name: str) -> object:
    # FEATURE_SPEC needs TensorFlow: built on first use, so that writers never import it.
    if name == "FEATURE_SPEC":
        import tensorflow as tf

        spec = {k: tf.io.FixedLenFeature([], tf.string) for k in _BYTES_KEYS}
        spec |= {k: tf.io.FixedLenFeature([], tf.int64) for k in ("image/width", "image/height")}
        return spec
    raise AttributeError(name)


_BYTES_KEYS = ("image/encoded", "image/format", "image/sha256", "text", "image/url", "page/url")
