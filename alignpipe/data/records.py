"""The (image, alt-text) pair record shared by scrape, filter and train.

Pairs are stored as `tf.train.Example`s in sharded TFRecord files
(`<dir>/pairs-?????-of-?????.tfrecord.gz`, GZIP-compressed). Features:

| key            | type   | meaning                                         |
|----------------|--------|-------------------------------------------------|
| image/encoded  | bytes  | the image file as downloaded (JPEG, PNG, ...)   |
| image/format   | bytes  | `jpeg`, `png`, `gif`, `webp`, `bmp`             |
| image/width    | int64  | pixels                                          |
| image/height   | int64  | pixels                                          |
| image/sha256   | bytes  | hex SHA-256 of `image/encoded`                  |
| text           | bytes  | the alt-text, UTF-8, whitespace-normalised      |
| image/url      | bytes  | absolute URL the image was downloaded from      |
| page/url       | bytes  | URL of the page whose `<img alt>` gave the text |
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

SHARD_PREFIX = "pairs"
SHARD_SUFFIX = ".tfrecord.gz"
COMPRESSION = "GZIP"


@dataclasses.dataclass(frozen=True)
class ImageTextPair:
    """One scraped (image, alt-text) pair."""

    image_bytes: bytes
    image_format: str
    width: int
    height: int
    sha256: str
    text: str
    image_url: str
    page_url: str

    def to_example(self) -> bytes:
        """Serialises to `tf.train.Example` bytes with the schema above."""

        def b(v: str | bytes) -> tf.train.Feature:
            v = v.encode("utf-8") if isinstance(v, str) else v
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))

        def i(v: int) -> tf.train.Feature:
            return tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))

        feature = {
            "image/encoded": b(self.image_bytes),
            "image/format": b(self.image_format),
            "image/width": i(self.width),
            "image/height": i(self.height),
            "image/sha256": b(self.sha256),
            "text": b(self.text),
            "image/url": b(self.image_url),
            "page/url": b(self.page_url),
        }
        return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()

    @classmethod
    def from_example(cls, data: bytes) -> ImageTextPair:
        f = tf.train.Example.FromString(data).features.feature

        def s(k: str) -> str:
            return f[k].bytes_list.value[0].decode("utf-8")

        return cls(
            image_bytes=f["image/encoded"].bytes_list.value[0],
            image_format=s("image/format"),
            width=int(f["image/width"].int64_list.value[0]),
            height=int(f["image/height"].int64_list.value[0]),
            sha256=s("image/sha256"),
            text=s("text"),
            image_url=s("image/url"),
            page_url=s("page/url"),
        )


# For tf.data: `tf.io.parse_single_example(serialized, FEATURE_SPEC)`.
FEATURE_SPEC = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string),
    "image/format": tf.io.FixedLenFeature([], tf.string),
    "image/width": tf.io.FixedLenFeature([], tf.int64),
    "image/height": tf.io.FixedLenFeature([], tf.int64),
    "image/sha256": tf.io.FixedLenFeature([], tf.string),
    "text": tf.io.FixedLenFeature([], tf.string),
    "image/url": tf.io.FixedLenFeature([], tf.string),
    "page/url": tf.io.FixedLenFeature([], tf.string),
}


def shard_pattern(directory: str) -> str:
    """Glob matching every pair shard written into `directory`."""
    return f"{directory.rstrip('/')}/{SHARD_PREFIX}-*{SHARD_SUFFIX}"


def shard_prefix(directory: str) -> str:
    """`file_path_prefix` for Beam's `WriteToTFRecord` (with `SHARD_SUFFIX`)."""
    return f"{directory.rstrip('/')}/{SHARD_PREFIX}"
