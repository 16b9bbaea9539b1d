"""ALIGN's filters as one Beam pipeline: raw pair shards in, kept pairs and a funnel out.

Outputs, in `out_dir`:
- `pairs-SSSSS-of-NNNNN.tfrecord.gz`: the kept pairs, unchanged, in the schema of
  `alignpipe.data.records` (`cfg.filter.num_shards` shards, GZIP).
- `dropped-SSSSS-of-NNNNN.jsonl`: one JSON object per dropped pair,
  `{"image_url", "page_url", "sha256", "text", "reason"}`, `reason` one of `REASONS`.
- `funnel.json`, `funnel.png`: the counts (see `alignpipe.filtering.funnel`), and warnings,
  also logged, when a rule drops most of what reaches it or fewer pairs than one
  training batch are kept.

Shape of the pipeline (every statistic is computed over the RAW input, as the paper does):

    raw pairs -+- alt-texts -> VocabularyTokensPerText (top-K unigrams+bigrams) -----------+
               +- GroupByKey(image sha256): decode + pHash once per image,                 |
               |  count its distinct alt-texts -> CoGroupByKey(normalised alt-text) <------+
               |  count the alt-text's distinct images, drop_reason() per pair
               |       -> kept: TFRecords | dropped: JSONL | outcome counts -> funnel
    evaluation images -> pHash -> PHashIndex (side input)
    blocklist file    -> PHashIndex (side input)

The side inputs are small: the pHash indexes of the evaluation images and of the
blocklist (thousands to millions of 64-bit ints) and the vocabulary's cutoff key;
corpus-sized data (pairs, counts, the vocabulary itself) only meets through joins.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from PIL import Image

from alignpipe import fs
from alignpipe.config import Config, EvalConfig, FilterConfig
from alignpipe.data.eval_sets import load_classification_set, load_retrieval_set
from alignpipe.data.records import SHARD_SUFFIX, ImageTextPair, shard_pattern, shard_prefix
from alignpipe.errors import InputError
from alignpipe.filtering.funnel import FUNNEL_JSON, FunnelReport, plot_funnel, write_funnel_json
from alignpipe.filtering.rules import PairFacts, drop_reason, normalise_alt_text
from alignpipe.filtering.vocabulary import VocabularyTokensPerText
from alignpipe.imaging.phash import PHashIndex, phash, read_blocklist

__all__ = ["FunnelReport", "run_filter", "evaluation_image_paths", "decode_image_facts"]

log = logging.getLogger("alignpipe")

DROPPED_PREFIX = "dropped"
DROPPED_SUFFIX = ".jsonl"
FUNNEL_PNG = "funnel.png"
_COUNTS_FILE = "_funnel_counts.json"  # the pipeline's outcome counts, read back then deleted
_STAGING = "_staging"  # outputs are written here, then moved into place when complete


class _ImageFacts(NamedTuple):
    decodable: bool
    width: int
    height: int
    phash: int | None
    alts_per_image: int


def run_filter(cfg: Config, in_dir: str, out_dir: str) -> FunnelReport:
    """Filters the raw pairs of `in_dir` into `out_dir` and reports the funnel.

    Args:
        cfg: thresholds from `cfg.filter`, evaluation sets from `cfg.eval`, Beam
            options from `cfg.runner.beam_args`.
        in_dir: folder of raw pair shards (`shard_pattern(in_dir)`).
        out_dir: output folder (created; earlier outputs of this stage are replaced).

    Returns:
        The funnel, also written to `out_dir/funnel.json` and `out_dir/funnel.png`; its
        warnings (a rule that drops most of its input, fewer pairs kept than
        `train.batch_size`) are also logged at WARNING level.

    Raises:
        InputError: `in_dir` holds no pair shards, the blocklist is missing or
            malformed, an evaluation set is malformed or one of its images does not
            decode, or a shard record is not an `ImageTextPair` example.
    """
    shards = fs.glob(shard_pattern(in_dir))
    if not shards:
        raise InputError(f"filter input folder {in_dir!r} has no pair shards ({shard_pattern(in_dir)})")
    eval_paths = evaluation_image_paths(cfg.eval)
    blocklist = cfg.filter.unsafe_image_blocklist
    if not blocklist:
        log.info("filter: filter.unsafe_image_blocklist is empty, the image_unsafe rule is off")
    elif not fs.exists(blocklist):
        raise InputError(f"pHash blocklist {blocklist!r} does not exist")
    final_dir, out_dir = out_dir, fs.join(out_dir, _STAGING)  # the last good output stays until the end
    if fs.exists(out_dir):
        FileSystems.delete([out_dir])
    fs.makedirs(out_dir)
    counts_path = fs.join(out_dir, _COUNTS_FILE)
    start = time.monotonic()
    log.info("filter: %d shards from %s, %d evaluation images", len(shards), in_dir, len(eval_paths))
    with beam.Pipeline(options=PipelineOptions(list(cfg.runner.beam_args))) as p:
        _build(p, cfg.filter, shards, eval_paths, out_dir, counts_path)
    counts = fs.read_json(counts_path)
    fs.delete([counts_path])
    report = FunnelReport.from_outcomes(counts["input_pairs"], counts["outcomes"], cfg.train.batch_size)
    write_funnel_json(report, fs.join(out_dir, FUNNEL_JSON))
    plot_funnel(report, fs.join(out_dir, FUNNEL_PNG))
    _publish(out_dir, final_dir)
    log.info(
        "filter: kept %d of %d pairs in %.1f s; dropped %s",
        report.kept_pairs,
        report.input_pairs,
        time.monotonic() - start,
        {k: v for k, v in report.dropped.items() if v},
    )
    for warning in report.warnings:
        log.warning("filter: %s", warning)
    return report


def evaluation_image_paths(eval_cfg: EvalConfig) -> list[str]:
    """Every image of the configured evaluation sets, all retrieval splits included.

    An empty `eval.retrieval_set` or `eval.classification_set` is skipped with a log
    line (the image_eval_duplicate rule then checks fewer or no images).

    Raises:
        InputError: a configured set is missing or malformed.
    """
    paths: list[str] = []
    if eval_cfg.retrieval_set:
        splits = _retrieval_splits(eval_cfg.retrieval_set)
        for split in splits:
            paths += load_retrieval_set(eval_cfg.retrieval_set, split).image_paths
        log.info("filter: retrieval set %s, splits %s", eval_cfg.retrieval_set, splits)
    else:
        log.info("filter: eval.retrieval_set is empty, no retrieval images to deduplicate against")
    if eval_cfg.classification_set:
        paths += load_classification_set(eval_cfg.classification_set).image_paths
    else:
        log.info("filter: eval.classification_set is empty, no classification images to deduplicate against")
    return sorted(set(paths))


def _retrieval_splits(json_path: str) -> list[str]:
    if not fs.exists(json_path):
        raise InputError(f"retrieval set {json_path!r} does not exist")
    try:
        entries = fs.read_json(json_path)["images"]
        return sorted({entry["split"] for entry in entries if entry.get("split")})
    except (ValueError, KeyError, TypeError, AttributeError):
        raise InputError(f"retrieval set {json_path!r} is not Karpathy-format JSON") from None


def decode_image_facts(image_bytes: bytes) -> tuple[bool, int, int, int | None]:
    """(decodable, width, height, pHash) of image file bytes; (False, 0, 0, None) if undecodable."""
    try:
        image = Image.open(io.BytesIO(image_bytes))
        image.load()
        return True, image.width, image.height, phash(image)
    except Exception:  # untrusted web bytes: any decoder failure means "undecodable"
        return False, 0, 0, None


def dropped_record_json(pair: ImageTextPair, reason: str) -> str:
    """One line of `dropped-*.jsonl`."""
    record = {
        "image_url": pair.image_url,
        "page_url": pair.page_url,
        "sha256": pair.sha256,
        "text": pair.text,
        "reason": reason,
    }
    return json.dumps(record, ensure_ascii=False)


def _parse_pair(element: tuple[str, bytes]) -> ImageTextPair:
    filename, record = element
    try:
        return ImageTextPair.from_example(record)
    except Exception as e:  # protobuf DecodeError, missing or empty feature
        raise InputError(f"{filename}: a record is not an ImageTextPair tf.train.Example ({e!r})") from None


def _evaluation_image_phash(path: str) -> int:
    decodable, _, _, image_hash = decode_image_facts(fs.read_bytes(path))
    if not decodable:
        raise InputError(f"evaluation image {path!r} cannot be decoded")
    return image_hash


def _judge_image(element: tuple[str, Iterable[ImageTextPair]]) -> Iterator[tuple[str, tuple]]:
    """All pairs of one image -> (normalised alt-text, (pair, image facts)) per pair."""
    _, pairs = element
    alts, first = set(), None
    for pair in pairs:
        alts.add(normalise_alt_text(pair.text))
        if first is None:
            first = pair
    decodable, width, height, image_hash = decode_image_facts(first.image_bytes)
    facts = _ImageFacts(decodable, width, height, image_hash, len(alts))
    for pair in pairs:
        yield normalise_alt_text(pair.text), (pair, facts)


class _DecidePairs(beam.DoFn):
    """All pairs of one normalised alt-text -> kept examples, dropped JSON lines, outcomes."""

    def __init__(self, cfg: FilterConfig):
        self.cfg = cfg

    def process(self, element, eval_index: PHashIndex, unsafe_index: PHashIndex):
        _, grouped = element
        token_sets = list(grouped["vocabulary_tokens"])
        vocabulary_tokens = token_sets[0] if token_sets else frozenset()
        members = grouped["pairs"]
        images_per_alt = len({pair.sha256 for pair, _ in members})
        for pair, image in members:
            facts = PairFacts(
                image.decodable,
                image.width,
                image.height,
                image.phash,
                pair.text,
                image.alts_per_image,
                images_per_alt,
                vocabulary_tokens,
            )
            reason = drop_reason(facts, self.cfg, eval_index, unsafe_index)
            yield beam.pvalue.TaggedOutput("outcome", reason or "kept")
            if reason is None:
                yield pair.to_example()
            else:
                yield beam.pvalue.TaggedOutput("dropped", dropped_record_json(pair, reason))


def _build(p, cfg: FilterConfig, shards, eval_paths, out_dir: str, counts_path: str) -> None:
    pairs = (
        p
        | "Shards" >> beam.Create(shards)
        | "Read" >> beam.io.ReadAllFromTFRecord(compression_type=CompressionTypes.GZIP, with_filename=True)
        | "Parse" >> beam.Map(_parse_pair)
    )
    eval_index, unsafe_index = _hash_indexes(p, cfg, eval_paths)
    vocabulary_tokens = (
        pairs
        | "Texts" >> beam.Map(lambda pair: pair.text)
        | "Vocabulary" >> VocabularyTokensPerText(cfg.rare_token_vocab_size, cfg.rare_token_min_word_share)
    )
    judged_images = (
        pairs
        | "ByImage" >> beam.Map(lambda pair: (pair.sha256, pair))
        | "GroupByImage" >> beam.GroupByKey()
        | "JudgeImages" >> beam.FlatMap(_judge_image)
    )
    decided = (
        {"pairs": judged_images, "vocabulary_tokens": vocabulary_tokens}
        | "GroupByText" >> beam.CoGroupByKey()
        | "Decide"
        >> beam.ParDo(
            _DecidePairs(cfg), beam.pvalue.AsSingleton(eval_index), beam.pvalue.AsSingleton(unsafe_index)
        ).with_outputs("dropped", "outcome", main="kept")
    )
    _write_outputs(pairs, decided, cfg, out_dir, counts_path)


def _hash_indexes(p, cfg: FilterConfig, eval_paths: list[str]):
    """Two singleton PCollections: the PHashIndex of the evaluation images and of the blocklist."""
    eval_hashes = (
        p | "EvalImages" >> beam.Create(eval_paths) | "EvalPHash" >> beam.Map(_evaluation_image_phash)
    )
    blocklist = [cfg.unsafe_image_blocklist] if cfg.unsafe_image_blocklist else []
    unsafe_hashes = (
        p | "Blocklist" >> beam.Create(blocklist) | "ReadBlocklist" >> beam.FlatMap(read_blocklist)
    )
    return tuple(
        hashes
        | f"{label}HashList" >> beam.combiners.ToList()
        | f"{label}Index" >> beam.Map(PHashIndex, radius=radius)
        for hashes, label, radius in (
            (eval_hashes, "Eval", cfg.eval_duplicate_max_hamming),
            (unsafe_hashes, "Unsafe", cfg.unsafe_image_max_hamming),
        )
    )


def _write_outputs(pairs, decided, cfg: FilterConfig, out_dir: str, counts_path: str) -> None:
    decided.kept | "WriteKept" >> beam.io.WriteToTFRecord(
        shard_prefix(out_dir),
        file_name_suffix=SHARD_SUFFIX,
        num_shards=cfg.num_shards,
        compression_type=CompressionTypes.GZIP,
    )
    decided.dropped | "WriteDropped" >> beam.io.WriteToText(
        fs.join(out_dir, DROPPED_PREFIX), file_name_suffix=DROPPED_SUFFIX, num_shards=cfg.num_shards
    )
    input_count = pairs | "CountInput" >> beam.combiners.Count.Globally()
    (
        decided.outcome
        | "CountOutcomes" >> beam.combiners.Count.PerElement()
        | "OutcomeDict" >> beam.combiners.ToDict()
        | "CountsJson"
        >> beam.Map(
            lambda outcomes, n: json.dumps({"input_pairs": n, "outcomes": outcomes}),
            beam.pvalue.AsSingleton(input_count),
        )
        | "WriteCounts" >> beam.io.WriteToText(counts_path, shard_name_template="", num_shards=1)
    )


def _outputs(folder: str) -> list[str]:
    patterns = [shard_pattern(folder), fs.join(folder, f"{DROPPED_PREFIX}-*{DROPPED_SUFFIX}")]
    found = [path for pattern in patterns for path in fs.glob(pattern)]
    return found + [fs.join(folder, n) for n in (FUNNEL_JSON, FUNNEL_PNG) if fs.exists(fs.join(folder, n))]


def _publish(staging: str, out_dir: str) -> None:
    """Replaces the earlier outputs of `out_dir` by the finished ones in `staging`."""
    stale = _outputs(out_dir)
    if stale:
        log.info("filter: replacing %d earlier output files in %s", len(stale), out_dir)
        fs.delete(stale)
    for path in _outputs(staging):
        FileSystems.rename([path], [fs.join(out_dir, path[len(staging) + 1 :])])
    FileSystems.delete([staging])
