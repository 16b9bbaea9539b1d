"""ALIGN's filters as one Beam pipeline: raw pair shards in, kept pairs and a funnel out.

Outputs, in `out_dir`:
- `pairs-SSSSS-of-NNNNN.tfrecord.gz`: the kept pairs, unchanged, in the schema of
  `alignpipe.data.records`: output shard S holds the kept records of input shard S (sorted
  input paths), in their order, in the scrape's GZIP framing.
- `dropped-SSSSS-of-NNNNN.jsonl` (`cfg.filter.num_shards` files): one JSON object per dropped pair,
  `{"image_url", "page_url", "sha256", "text", "reason"}`, `reason` one of `REASONS`.
- `contamination.jsonl`: the test-set contamination report, one JSON object per pair dropped
  as `image_eval_duplicate`, `{"image_url", "page_url", "sha256", "text", "image_phash" (16 hex
  digits), "eval_set" (the set's name), "eval_image" (its path), "hamming"}`: the evaluation
  image nearest to the pair's (ties: the smallest (set, path)); empty when none is dropped.
  `contamination_counts` reads it back as removed pairs per set.
- `funnel.json`, `funnel.png`: the counts (see `alignpipe.filtering.funnel`), and warnings,
  also logged, when a rule drops most of what reaches it or fewer pairs than one
  training batch are kept.
- `vocab.txt`: the text tower's WordPiece vocabulary (`model.vocab_size` tokens at most, one
  a line), learnt from the kept alt-texts as the trainer would learn it
  (`alignpipe.filtering.wordpiece`); the trainer reads it instead of learning it again.
- `corpus_stats.json`, `corpus_stats.png`, `drift_report.json`: the kept pairs' statistics
  and how far they moved from the last run's (`alignpipe.filtering.stats`).

Shape of the pipeline. Every statistic is computed over the RAW input, as the paper does,
and from metadata only (`PairMeta`: SHA-256, text, size, pHash; no image bytes). Pairs travel
in batches (`alignpipe.filtering.batches`: a DataFrame of up to `BATCH_ROWS` pairs per element),
because Beam's per-element cost, not the rules, is what a pair-per-element pipeline spends:

    shards -> ReadMetadata: `PairBatch`es (the pHash from the record, or from decoding the
              |             bytes there once when the scrape did not), alt-texts normalised
              +- pieces by bucket of sha256 -> GroupByKey -> KeysOverCap: rows of images
              |                                with too many alts --------------------------+
              +- pieces by bucket of alt-text -+-> CoGroupByKey -> KeysOverCap: rows of    |
              +- alt-text counts -> RareTexts -+   alts on too many images, or rare -------+
              +- CoGroupByKey(batch id) <-----------------------------------------------------+
                  -> the rules on the whole batch (`frame_rules.outcome_codes`) -> decisions
    decisions -> dropped: JSONL | outcome counts -> funnel | kept pairs' statistics
              -> per pair: (meta, reason)
              -> image_eval_duplicate -> nearest evaluation image -> contamination.jsonl
              -> kept (shard, index) -> GroupByKey(shard) -> CopyKept: each shard is read
                 again and its kept records copied into the output shard of its number
              -> kept alt-texts -> WordPieceVocabulary (word counts, top-N) -> vocab.txt
    evaluation images (set, path) -> pHash -> PHashIndex, (set, path)s by pHash (side inputs)
    blocklist file    -> PHashIndex (side input)

Hot keys: the joins group buckets of keys (one bucket per input file, at most
`batches.MAX_JOIN_BUCKETS`), not keys, and count each key's distinct partners over the whole
bucket at once with Arrow and numpy (`KeysOverCap`), so boilerplate alt-texts ("logo") and images on
every page cost the same as any other. The joins group small metadata records, which a
distributed runner streams; image bytes are never shuffled: they are read twice, sequentially,
shard by shard (once for metadata, once to copy the kept records out).

The side inputs are small: the pHash indexes of the evaluation images (and their set
and path by pHash) and of the blocklist (thousands to millions of 64-bit ints) and the
vocabulary's cutoff key;
corpus-sized data (pairs, counts, the vocabulary itself) only meets through joins.

`run_filter_metadata` runs the same decisions on a metadata-only input (parquet with the
columns of `PairMeta`): the filter's benchmark, and a dry run of thresholds on an export.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator

import apache_beam as beam
import numpy as np
import pandas as pd
import pyarrow as pa
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from alignpipe import fs
from alignpipe.config import Config, FilterConfig, beam_pipeline_args
from alignpipe.data.corpus import input_folders
from alignpipe.data.example_proto import Example
from alignpipe.data.records import (
    SHARD_SUFFIX,
    UINT64,
    TFRecordWriter,
    iter_tfrecords,
    shard_pattern,
    shard_prefix,
)
from alignpipe.errors import InputError
from alignpipe.filtering.batches import (
    BATCH_ROWS,
    STRING,
    DecideBatches,
    SummariseBatch,
    batch_of_metas,
    decided_pairs,
    join_buckets,
    with_alt_texts,
)
from alignpipe.filtering.contamination import (
    CONTAMINATION_JSONL,
    contamination_counts,
    evaluation_images_logged,
    images_by_hash,
    write_contamination,
)
from alignpipe.filtering.facts import METADATA_COLUMNS, PairMeta
from alignpipe.filtering.funnel import FUNNEL_JSON, FunnelReport, plot_funnel, write_funnel_json
from alignpipe.filtering.rules import NO_UNSAFE_WORDS, REASONS, UnsafeWordList
from alignpipe.filtering.safety import ImageScorer, load_image_scorer, load_unsafe_words, nsfw_score
from alignpipe.filtering.stats import (
    DRIFT_JSON,
    STATS_JSON,
    STATS_PNG,
    MergedCorpusStatsFn,
    drift_report,
    plot_stats,
    write_stats_json,
)
from alignpipe.filtering.wordpiece import WordPieceVocabulary
from alignpipe.imaging.decode import decode_image_facts
from alignpipe.imaging.phash import PHashIndex, read_blocklist
from alignpipe.model.reserved_tokens import RESERVED_TOKENS, VOCAB_FILE

__all__ = [
    "FunnelReport",
    "run_filter",
    "run_filter_metadata",
    "decode_image_facts",
]

log = logging.getLogger("alignpipe")

DROPPED_PREFIX = "dropped"
DROPPED_SUFFIX = ".jsonl"
FUNNEL_PNG = "funnel.png"
_COUNTS_FILE = "_funnel_counts.json"  # the pipeline's outcome counts, read back then deleted
_STAGING = "_staging"  # outputs are written here, then moved into place when complete


def run_filter(cfg: Config, in_dir: str, out_dir: str, previous_stats: dict | None = None) -> FunnelReport:
    """Filters the raw pairs of `in_dir` into `out_dir` and reports the funnel.

    Also writes the test-set contamination report (`contamination.jsonl`: each pair dropped
    as `image_eval_duplicate`, with the evaluation set and image it is near; removed pairs
    per set are logged), the kept pairs' statistics (`corpus_stats.json`, `.png`), how far
    they moved from `previous_stats` (`drift_report.json`; drift is logged as a warning),
    and the WordPiece vocabulary of their alt-texts (`vocab.txt`).

    Args:
        cfg: thresholds from `cfg.filter`, evaluation sets from `cfg.eval`, Beam
            options from `cfg.runner.beam_args`, the vocabulary's size from
            `cfg.model.vocab_size`.
        in_dir: folder of raw pair shards (`shard_pattern(in_dir)`), or a scrape output whose
            `corpus.json` lists the corpus snapshots to read (`alignpipe.data.corpus`).
        out_dir: output folder (created; earlier outputs of this stage are replaced).
        previous_stats: the last run's statistics; default: those of the output being
            replaced in `out_dir`, if any.

    Returns:
        The funnel, also written to `out_dir/funnel.json` and `out_dir/funnel.png`; its
        warnings (a rule that drops most of its input, fewer pairs kept than
        `train.batch_size`) are also logged at WARNING level.

    Raises:
        InputError: `in_dir` holds no pair shards, the blocklist is missing or
            malformed, an evaluation set is malformed or one of its images does not
            decode, or a shard record is not an `ImageTextPair` example.
    """
    # a scrape with `scrape.corpus_dir` lists the corpus snapshots to read instead
    shards = [path for folder in input_folders(in_dir) for path in fs.glob(shard_pattern(folder))]
    if not shards:
        raise InputError(f"filter input folder {in_dir!r} has no pair shards ({shard_pattern(in_dir)})")
    eval_images = evaluation_images_logged(cfg.eval)
    blocklist = cfg.filter.unsafe_image_blocklist
    if not blocklist:
        log.info("filter: filter.unsafe_image_blocklist is empty, the image_unsafe rule is off")
    elif not fs.exists(blocklist):
        raise InputError(f"pHash blocklist {blocklist!r} does not exist")
    words = _unsafe_words(cfg.filter)
    if cfg.filter.nsfw_image_scorer:
        load_image_scorer(cfg.filter.nsfw_image_scorer)  # a bad spec fails here, not in a worker
    else:
        log.info("filter: filter.nsfw_image_scorer is empty, the image_nsfw rule is off")
    if previous_stats is None and fs.exists(fs.join(out_dir, STATS_JSON)):
        previous_stats = fs.read_json(fs.join(out_dir, STATS_JSON))
    final_dir, out_dir = out_dir, fs.join(out_dir, _STAGING)  # the last good output stays until the end
    fs.delete_tree(out_dir)  # a run cut short left files that must not be published with these
    fs.makedirs(out_dir)
    counts_path = fs.join(out_dir, _COUNTS_FILE)
    start = time.monotonic()
    log.info("filter: %d shards from %s, %d evaluation images", len(shards), in_dir, len(eval_images))
    with beam.Pipeline(options=PipelineOptions(beam_pipeline_args(cfg))) as p:
        shard_paths = p | "Shards" >> beam.Create(shards)
        batches = shard_paths | "ReadMetadata" >> beam.ParDo(
            _ReadShardMetadata(cfg.filter.nsfw_image_scorer, cfg.scrape.max_image_pixels)
        )
        eval_index, eval_by_hash, unsafe_index = _hash_indexes(p, cfg.filter, eval_images)
        decided = batches | "Decide" >> DecideBatches(
            cfg.filter, eval_index, unsafe_index, words, join_buckets(len(shards))
        )
        decisions = decided | "PairDecisions" >> beam.FlatMap(decided_pairs)
        write_contamination(decisions, eval_index, eval_by_hash, cfg.filter, out_dir)
        _write_kept(shard_paths, decisions, shards, out_dir)
        _write_vocabulary(decisions, shards, cfg.model.vocab_size, out_dir)
        _write_report(decided, cfg.filter, out_dir, counts_path)
    counts = fs.read_json(counts_path)
    fs.delete([counts_path])
    report = FunnelReport.from_outcomes(counts["input_pairs"], counts["outcomes"], cfg.train.batch_size)
    write_funnel_json(report, fs.join(out_dir, FUNNEL_JSON))
    plot_funnel(report, fs.join(out_dir, FUNNEL_PNG))
    drift = drift_report(previous_stats, counts["stats"], cfg.filter.max_stats_drift)
    write_stats_json(counts["stats"], fs.join(out_dir, STATS_JSON))
    write_stats_json(drift, fs.join(out_dir, DRIFT_JSON))
    plot_stats(counts["stats"], previous_stats, fs.join(out_dir, STATS_PNG))
    contamination = contamination_counts(out_dir, {name for name, _ in eval_images})
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
    (log.warning if drift["drifted"] else log.info)("filter: %s", drift["summary"])
    if contamination:
        log.info("filter: training pairs near an evaluation image, per set: %s", contamination)
    return report


def _unsafe_words(cfg: FilterConfig) -> UnsafeWordList:
    if not cfg.unsafe_alt_words:
        log.info("filter: filter.unsafe_alt_words is empty, the text_unsafe rule is off")
        return NO_UNSAFE_WORDS
    return load_unsafe_words(cfg.unsafe_alt_words)


def pair_metadata(
    shard: str,
    index: int,
    record: bytes,
    decoded: dict[str, tuple] | None = None,
    scorer: ImageScorer | None = None,
    scorer_spec: str = "",
    max_pixels: int = 0,
) -> PairMeta:
    """The `PairMeta` of one shard record.

    A record with a pHash (the scrape decoded and resized the image) is not decoded: its
    size is the original one it carries. Otherwise the stored bytes are the downloaded file:
    they are decoded here for their pHash and size, under the scrape's pixel cap `max_pixels`
    (`decode_image_facts`), once per image when `decoded` (a cache of SHA-256 -> (width,
    height, pHash, NSFW score) that the caller keeps) is given: the pairs of one image lie next
    to each other in a shard. `scorer` (`filter.nsfw_image_scorer`), when given, scores every
    decodable image, also once per image with the cache.

    Raises:
        InputError: the record is not an `ImageTextPair` example, or the scorer returned
            something that is not a probability.
    """
    try:
        f = Example.FromString(record).features.feature
        text = f["text"].bytes_list.value[0].decode("utf-8")
        sha256 = f["image/sha256"].bytes_list.value[0].decode("utf-8")
        urls = [f[k].bytes_list.value[0].decode("utf-8") for k in ("image/url", "page/url")]
        known = decoded.get(sha256) if decoded is not None else None
        if known is None:
            image_bytes = f["image/encoded"].bytes_list.value[0]
            stored_facts = "image/phash" in f and (
                f["image/phash"].int64_list.value[0] & UINT64,
                f["image/original_width"].int64_list.value[0],
                f["image/original_height"].int64_list.value[0],
            )
    except Exception as e:  # protobuf DecodeError, missing or empty feature
        raise InputError(f"{shard}: record {index} is not an ImageTextPair Example ({e!r})") from None
    if known is not None:
        width, height, image_hash, score = known
    else:
        if stored_facts:
            image_hash, width, height = stored_facts
        else:
            _, width, height, image_hash = decode_image_facts(image_bytes, max_pixels)
        score = None
        if scorer is not None and image_hash is not None:  # a scorer's error is its own
            score = nsfw_score(scorer, image_bytes, scorer_spec)
        if decoded is not None:
            if len(decoded) >= _DECODED_CACHE:
                decoded.clear()
            decoded[sha256] = width, height, image_hash, score
    return PairMeta(shard, index, sha256, text, width, height, image_hash, *urls, score or 0.0)


_DECODED_CACHE = 4096  # images whose decoded facts a shard reader remembers


class _ReadShardMetadata(beam.DoFn):
    """Shard path -> its records' `PairMeta` as `PairBatch`es, streamed (image bytes are not kept)."""

    def __init__(self, scorer_spec: str = "", max_pixels: int = 0):
        self.scorer_spec = scorer_spec
        self.max_pixels = max_pixels

    def setup(self) -> None:
        self.scorer = load_image_scorer(self.scorer_spec) if self.scorer_spec else None

    def process(self, shard: str) -> Iterator[tuple]:
        decoded: dict[str, tuple] = {}
        metas: list[PairMeta] = []
        with FileSystems.open(shard, compression_type=CompressionTypes.UNCOMPRESSED) as file:
            for index, record in enumerate(iter_tfrecords(file)):
                meta = pair_metadata(
                    shard, index, record, decoded, self.scorer, self.scorer_spec, self.max_pixels
                )
                metas.append(meta)
                if len(metas) == BATCH_ROWS:
                    yield (shard, index // BATCH_ROWS), batch_of_metas(metas)
                    metas = []
        if metas:
            yield (shard, metas[-1].index // BATCH_ROWS), batch_of_metas(metas)


_PANDAS_TYPES = {pa.int64(): pd.Int64Dtype(), pa.string(): STRING, pa.large_string(): STRING}


def read_metadata_batches(path: str) -> Iterator[tuple]:
    """A parquet metadata file (the columns of `PairMeta`) as `PairBatch`es of `BATCH_ROWS`."""
    import pyarrow.parquet as pq

    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as file:
        table = pq.read_table(file)
    missing = [c for c in ("sha256", "text", "width", "height", "phash") if c not in table.column_names]
    if missing:
        raise InputError(f"metadata file {path!r} lacks the columns {missing}")
    defaults = {"shard": path, "index": 0, "image_url": "", "page_url": "", "nsfw_score": 0.0}
    for number, batch in enumerate(table.to_batches(max_chunksize=BATCH_ROWS)):
        frame = batch.to_pandas(types_mapper=_PANDAS_TYPES.get)
        for name, default in defaults.items():
            frame[name] = frame[name].fillna(default) if name in frame else default
        frame["index"] = frame["index"].astype("int64")
        frame["width"], frame["height"] = frame["width"].astype("int64"), frame["height"].astype("int64")
        yield (path, number), with_alt_texts(frame[list(METADATA_COLUMNS)])


def _evaluation_image_phash(path: str) -> int:
    decodable, _, _, image_hash = decode_image_facts(fs.read_bytes(path))
    if not decodable:
        raise InputError(f"evaluation image {path!r} cannot be decoded")
    return image_hash


def _hash_indexes(p, cfg: FilterConfig, eval_images: list[tuple[str, str]]):
    """Three singleton PCollections: the PHashIndex of the evaluation images, their
    (set, path)s by pHash (for the contamination report), and the PHashIndex of the blocklist."""
    eval_hashes = (
        p
        | "EvalImages" >> beam.Create(eval_images)
        | "EvalPHash" >> beam.Map(lambda image: (_evaluation_image_phash(image[1]), image))
        | "EvalHashList" >> beam.combiners.ToList()
    )
    eval_index = eval_hashes | "EvalIndex" >> beam.Map(
        lambda hashed: PHashIndex((h for h, _ in hashed), radius=cfg.eval_duplicate_max_hamming)
    )
    eval_by_hash = eval_hashes | "EvalImagesByHash" >> beam.Map(images_by_hash)
    blocklist = [cfg.unsafe_image_blocklist] if cfg.unsafe_image_blocklist else []
    unsafe_index = (
        p
        | "Blocklist" >> beam.Create(blocklist)
        | "ReadBlocklist" >> beam.FlatMap(read_blocklist)
        | "UnsafeHashList" >> beam.combiners.ToList()
        | "UnsafeIndex" >> beam.Map(PHashIndex, radius=cfg.unsafe_image_max_hamming)
    )
    return eval_index, eval_by_hash, unsafe_index


class _CopyKept(beam.DoFn):
    """(shard, kept record indices) -> the output shard of the same number, holding exactly
    those records, unchanged; written as the scrape writes (GZIP framing without compressing
    the compressed images again), streamed record by record."""

    def __init__(self, shards: list[str], out_dir: str):
        self.numbers = {shard: n for n, shard in enumerate(shards)}
        self.total, self.out_dir = len(shards), out_dir

    def process(self, element) -> Iterator[str]:
        shard, indices = element
        kept = {i for i in indices if i is not None}
        path = f"{shard_prefix(self.out_dir)}-{self.numbers[shard]:05d}-of-{self.total:05d}{SHARD_SUFFIX}"
        with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as out:
            writer = TFRecordWriter(out)
            if kept:
                with FileSystems.open(shard, compression_type=CompressionTypes.UNCOMPRESSED) as file:
                    for index, record in enumerate(iter_tfrecords(file)):
                        if index in kept:
                            writer.write(record)
            writer.close()
        yield path


def _write_kept(shards, decisions, shard_paths: list[str], out_dir: str) -> None:
    """One output shard per input shard, with the kept records (an empty one when none is)."""
    kept = decisions | "Kept" >> beam.FlatMapTuple(
        lambda meta, reason: [] if reason else [(meta.shard, meta.index)]
    )
    every_shard = shards | "EveryShard" >> beam.Map(lambda shard: (shard, None))
    (
        (kept, every_shard)
        | "WithEveryShard" >> beam.Flatten()
        | "KeptPerShard" >> beam.GroupByKey()
        | "CopyKept" >> beam.ParDo(_CopyKept(shard_paths, out_dir))
    )


def _write_vocabulary(decisions, shard_paths: list[str], vocab_size: int, out_dir: str) -> None:
    """`vocab.txt`: the WordPiece vocabulary of the kept alt-texts, which are positioned in the
    order the trainer reads them (output shard, then record: ties at the learner's input cap)."""
    numbers = {shard: n for n, shard in enumerate(shard_paths)}
    (
        decisions
        | "KeptTexts"
        >> beam.FlatMapTuple(
            lambda meta, reason: [] if reason else [((numbers[meta.shard], meta.index), meta.text)]
        )
        | "WordPiece" >> WordPieceVocabulary(vocab_size, RESERVED_TOKENS)
        | "VocabularyLines" >> beam.Map("\n".join)  # WriteToText ends the last line
        | "WriteVocabulary"
        >> beam.io.WriteToText(fs.join(out_dir, VOCAB_FILE), shard_name_template="", num_shards=1)
    )


def _write_report(decided, cfg: FilterConfig, out_dir: str, counts_path: str) -> None:
    """The dropped pairs' JSON lines, the outcome counts and the kept pairs' statistics (one
    small JSON file, read back into the funnel and the statistics), from the decided batches."""
    summaries = decided | "Summarise" >> beam.ParDo(SummariseBatch()).with_outputs(
        "dropped", "stats", main="outcomes"
    )
    (
        summaries.dropped  # one element of many lines per batch
        | "WriteDropped"
        >> beam.io.WriteToText(
            fs.join(out_dir, DROPPED_PREFIX), file_name_suffix=DROPPED_SUFFIX, num_shards=cfg.num_shards
        )
    )
    stats = summaries.stats | "CorpusStats" >> beam.CombineGlobally(MergedCorpusStatsFn())
    (
        summaries.outcomes
        | "CountOutcomes" >> beam.CombineGlobally(lambda counts: sum(counts, np.zeros(len(REASONS) + 1, int)))
        | "CountsJson"
        >> beam.Map(
            lambda counts, kept: json.dumps(
                {
                    "input_pairs": int(counts.sum()),
                    "outcomes": dict(zip([*REASONS, "kept"], counts.tolist(), strict=True)),
                    "stats": kept,
                }
            ),
            beam.pvalue.AsSingleton(stats),
        )
        | "WriteCounts" >> beam.io.WriteToText(counts_path, shard_name_template="", num_shards=1)
    )


def run_filter_metadata(cfg: Config, metadata_pattern: str, out_dir: str) -> FunnelReport:
    """Runs the filter's decisions on metadata only: parquet files with `PairMeta`'s columns.

    The evaluation-duplicate and blocklist rules are off (there are no images to hash), and
    `nsfw_score` comes from its column (0 without). Writes `dropped-*.jsonl`, `funnel.json` and
    `corpus_stats.json` into `out_dir`; no pairs are copied.

    Raises:
        InputError: no file matches `metadata_pattern`, or one lacks a needed column.
    """
    paths = fs.glob(metadata_pattern)
    if not paths:
        raise InputError(f"no metadata file matches {metadata_pattern!r}")
    stale = _outputs(out_dir)
    if stale:  # an earlier run's files (another number of shards) must not mix with these
        fs.delete(stale)
    fs.makedirs(out_dir)
    counts_path = fs.join(out_dir, _COUNTS_FILE)
    with beam.Pipeline(options=PipelineOptions(beam_pipeline_args(cfg))) as p:
        batches = p | "Files" >> beam.Create(paths) | "ReadMetadata" >> beam.FlatMap(read_metadata_batches)
        no_hashes = p | "NoHashes" >> beam.Create([PHashIndex([], radius=0)])
        words = _unsafe_words(cfg.filter)
        decided = batches | "Decide" >> DecideBatches(
            cfg.filter, no_hashes, no_hashes, words, join_buckets(len(paths))
        )
        _write_report(decided, cfg.filter, out_dir, counts_path)
    counts = fs.read_json(counts_path)
    fs.delete([counts_path])
    report = FunnelReport.from_outcomes(counts["input_pairs"], counts["outcomes"], cfg.train.batch_size)
    write_funnel_json(report, fs.join(out_dir, FUNNEL_JSON))
    write_stats_json(counts["stats"], fs.join(out_dir, STATS_JSON))
    return report


def _outputs(folder: str) -> list[str]:
    patterns = [shard_pattern(folder), fs.join(folder, f"{DROPPED_PREFIX}-*{DROPPED_SUFFIX}")]
    found = [path for pattern in patterns for path in fs.glob(pattern)]
    names = (FUNNEL_JSON, FUNNEL_PNG, STATS_JSON, STATS_PNG, DRIFT_JSON, VOCAB_FILE, CONTAMINATION_JSONL)
    return found + [fs.join(folder, n) for n in names if fs.exists(fs.join(folder, n))]


def _publish(staging: str, out_dir: str) -> None:
    """Replaces the earlier outputs of `out_dir` by the finished ones in `staging`."""
    stale = _outputs(out_dir)
    if stale:
        log.info("filter: replacing %d earlier output files in %s", len(stale), out_dir)
        fs.delete(stale)
    for path in _outputs(staging):
        FileSystems.rename([path], [fs.join(out_dir, path[len(staging) + 1 :])])
    fs.delete_tree(staging)
