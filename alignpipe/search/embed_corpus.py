"""The Beam pipeline that embeds a corpus's kept pairs for the index, one item per image.

Reads the filter's kept pair shards, groups the pairs by the image's sha256 and, against the
items an existing index already holds (its `items.jsonl`), keeps only what is new: an image not
in the index, and alt-texts not yet among its item's texts. `RunInference` embeds the new images
(`embed_image`) and texts (`embed_text`) with the exported SavedModel
(`SignatureModelHandler`); each item with anything new becomes one record of the shards written
to `out_dir` (`embedded-*.tfrecord.gz`, GZIP TFRecord of `tf.train.Example`s):

| key               | type  | meaning                                                   |
|-------------------|-------|-----------------------------------------------------------|
| sha256            | bytes | hex SHA-256 of the image as downloaded                    |
| image/url         | bytes | where the image was downloaded from                       |
| page/url          | bytes | the page whose `<img alt>` gave the first text            |
| image/embedding   | float | `[D]`; empty when the index holds the image already       |
| image/thumbnail   | bytes | JPEG, longest side <= 160 px; empty with no new image or  |
|                   |       | when the image cannot be decoded                          |
| texts             | bytes | the new alt-texts, sorted                                 |
| text/embeddings   | float | `[len(texts) * D]`, row-major                             |

The runner comes from the configuration (`beam_pipeline_args`): the same graph runs on the
in-process runner and on Dataflow.
"""

from __future__ import annotations

import dataclasses
import json

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference
from apache_beam.options.pipeline_options import PipelineOptions

from alignpipe import fs
from alignpipe.data.example_proto import Example
from alignpipe.data.records import ImageTextPair, shard_pattern
from alignpipe.imaging.thumbnail import make_thumbnail
from alignpipe.model.export import IMAGE_SIGNATURE, TEXT_SIGNATURE
from alignpipe.search.signature_model_handler import SignatureModelHandler

EMBEDDED_PREFIX, EMBEDDED_SUFFIX = "embedded", ".tfrecord.gz"
COUNTERS = "alignpipe_index"


@dataclasses.dataclass(frozen=True)
class NewContent:
    """What one image's pairs add to the index: the image (if new) and its new alt-texts."""

    sha256: str
    image_url: str
    page_url: str
    image_bytes: bytes | None  # None: the index holds the image already
    texts: tuple[str, ...]
    thumbnail: bytes = b""  # of a new image


def new_content(sha256: str, grouped: dict) -> list[NewContent]:
    """The new content of one sha256 from its kept `pairs` and the `known` texts of the index.

    The item's URLs are those of its first pair in (image URL, page URL) order, so that a
    rerun over the same shards describes the item the same way. A new image that cannot be
    decoded (no thumbnail) is left out, counted with its alt-texts (`undecodable_images`,
    `undecodable_image_texts`).
    """
    pairs = sorted(grouped["pairs"], key=lambda p: (p.image_url, p.page_url, p.text))
    if not pairs:
        return []
    known = grouped["known"]
    known_texts = set().union(*known) if known else set()
    texts = tuple(sorted({p.text for p in pairs} - known_texts))
    image = None if known else pairs[0].image_bytes
    if image is None and not texts:
        return []
    thumbnail = make_thumbnail(image) if image is not None else b""
    if thumbnail is None:
        beam.metrics.Metrics.counter(COUNTERS, "undecodable_images").inc()
        beam.metrics.Metrics.counter(COUNTERS, "undecodable_image_texts").inc(len(texts))
        return []
    first = pairs[0]
    return [NewContent(sha256, first.image_url, first.page_url, image, texts, thumbnail)]


def embedded_record(sha256: str, grouped: dict) -> bytes:
    """The output record of one item (module docstring) from its joined content and embeddings."""
    (content,) = grouped["content"]
    image = list(grouped["image"])  # [D] or nothing
    by_text = dict(grouped["texts"])
    example = Example()
    feature = example.features.feature
    for key, value in (("sha256", content.sha256), ("image/url", content.image_url)):
        feature[key].bytes_list.value.append(value.encode("utf-8"))
    feature["page/url"].bytes_list.value.append(content.page_url.encode("utf-8"))
    feature["image/embedding"].float_list.value.extend(image[0] if image else [])
    feature["image/thumbnail"].bytes_list.value.append(content.thumbnail)
    feature["texts"].bytes_list.value.extend(t.encode("utf-8") for t in content.texts)
    vectors = [by_text[t] for t in content.texts]
    feature["text/embeddings"].float_list.value.extend(np.concatenate(vectors) if vectors else [])
    return example.SerializeToString()


def _count(name: str):
    counter = beam.metrics.Metrics.counter(COUNTERS, name)

    def inc(element):
        counter.inc()
        return element

    return inc


def _known_texts(line: str) -> tuple[str, list[str]]:
    record = json.loads(line)
    return record["sha256"], list(record["texts"])


def embed_corpus(
    beam_args: list[str],
    saved_model_dir: str,
    data_dir: str,
    out_dir: str,
    known_items: str = "",
    image_batch_size: int = 32,
    text_batch_size: int = 256,
) -> dict[str, int]:
    """Runs the pipeline; the new items' records go to `out_dir`.

    Args:
        beam_args: Beam pipeline options (`beam_pipeline_args(cfg)`).
        saved_model_dir: the exported SavedModel (`alignpipe.model.export`).
        data_dir: the filter's kept pair shards (`pairs-*.tfrecord.gz`).
        out_dir: where the `embedded-*.tfrecord.gz` shards go.
        known_items: the `items.jsonl` of the index being extended ("" for a new index).

    Returns:
        The pipeline's counts: `images_embedded`, `texts_embedded`, `undecodable_images` and
        `undecodable_image_texts` (left out with them).
    """
    image_model = KeyedModelHandler(
        SignatureModelHandler(saved_model_dir, IMAGE_SIGNATURE, "images", image_batch_size)
    )
    text_model = KeyedModelHandler(
        SignatureModelHandler(saved_model_dir, TEXT_SIGNATURE, "texts", text_batch_size)
    )
    p = beam.Pipeline(options=PipelineOptions(beam_args))
    content = _new_content(p, data_dir, known_items)
    image_vectors = (
        content
        | "NewImages" >> beam.Filter(lambda c: c.image_bytes is not None)
        | "ImageBytes" >> beam.Map(lambda c: (c.sha256, c.image_bytes))
        | "EmbedImages" >> RunInference(image_model)
        | "CountImages" >> beam.Map(_count("images_embedded"))
        | "ImageVector" >> beam.MapTuple(lambda sha, result: (sha, result.inference))
    )
    texts = (
        content
        | "NewTexts" >> beam.FlatMap(lambda c: [((c.sha256, t), t) for t in c.texts])
        | "EmbedTexts" >> RunInference(text_model)
        | "CountTexts" >> beam.Map(_count("texts_embedded"))
        | "TextVector" >> beam.MapTuple(lambda key, result: (key[0], (key[1], result.inference)))
    )
    metadata = content | "Metadata" >> beam.Map(
        lambda c: (c.sha256, dataclasses.replace(c, image_bytes=None))
    )
    (
        {"content": metadata, "image": image_vectors, "texts": texts}
        | "JoinEmbeddings" >> beam.CoGroupByKey()
        | "Records" >> beam.MapTuple(embedded_record)
        | "WriteEmbedded"
        >> beam.io.WriteToTFRecord(
            fs.join(out_dir, EMBEDDED_PREFIX),
            file_name_suffix=EMBEDDED_SUFFIX,
            compression_type=CompressionTypes.GZIP,
        )
    )
    result = p.run()
    result.wait_until_finish()
    return _counts(result)


def _new_content(p: beam.Pipeline, data_dir: str, known_items: str) -> beam.PCollection:
    """The `NewContent` of the kept pairs against the known items, one per sha256."""
    pairs = (
        p
        | "ReadPairs"
        >> beam.io.ReadFromTFRecord(shard_pattern(data_dir), compression_type=CompressionTypes.GZIP)
        | "ParsePairs" >> beam.Map(ImageTextPair.from_example)
        | "BySha256" >> beam.Map(lambda pair: (pair.sha256, pair))
    )
    known = (
        p | "ReadKnown" >> beam.io.ReadFromText(known_items) | "KnownTexts" >> beam.Map(_known_texts)
        if known_items
        else p | "NoneKnown" >> beam.Create([])
    )
    return (
        {"pairs": pairs, "known": known}
        | "JoinKnown" >> beam.CoGroupByKey()
        | "NewContent" >> beam.FlatMapTuple(new_content)
    )


def _counts(result) -> dict[str, int]:
    counters = result.metrics().query(MetricsFilter().with_namespace(COUNTERS))["counters"]
    counts = dict.fromkeys(
        ("images_embedded", "texts_embedded", "undecodable_images", "undecodable_image_texts"), 0
    )
    for counter in counters:
        value = counter.committed if counter.committed is not None else counter.attempted
        counts[counter.key.metric.name] += int(value or 0)
    return counts
