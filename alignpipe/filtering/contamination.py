"""Evaluation-set contamination: which training images the filter removed as near-copies of
which evaluation images (ALIGN removes near-duplicates of every evaluation set it reports).

`contamination.jsonl` in the filter's output has one line per pair dropped as
`image_eval_duplicate`: the pair (image_url, page_url, sha256, text, image_phash) and the
evaluation image it matched (eval_set, eval_image, hamming).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable

import apache_beam as beam

from alignpipe import fs
from alignpipe.config import EvalConfig, FilterConfig
from alignpipe.data.eval_sets import classification_sets, evaluation_images, retrieval_sets
from alignpipe.errors import InputError
from alignpipe.filtering.facts import PairMeta
from alignpipe.imaging.phash import PHashIndex, phash_hex

log = logging.getLogger("alignpipe")

CONTAMINATION_JSONL = "contamination.jsonl"


def evaluation_images_logged(eval_cfg: EvalConfig) -> list[tuple[str, str]]:
    """`evaluation_images`, logging how many images each named set contributes (or that the
    image_eval_duplicate rule checks nothing, when no set is configured)."""
    names = [name for name, _ in retrieval_sets(eval_cfg) + classification_sets(eval_cfg)]
    if not names:
        log.info(
            "filter: no evaluation set is configured (eval.retrieval_sets, eval.classification_sets), "
            "the image_eval_duplicate rule checks nothing"
        )
        return []
    images = evaluation_images(eval_cfg)
    per_set = Counter(name for name, _ in images)
    for name in names:
        log.info("filter: evaluation set %s: %d images to deduplicate against", name, per_set[name])
    return images


def nearest_evaluation_image(
    image_hash: int, index: PHashIndex, images_by_hash: dict[int, list[tuple[str, str]]], max_hamming: int
) -> tuple[str, str, int] | None:
    """(set name, image path, Hamming distance) of the evaluation image nearest to `image_hash`
    within `max_hamming` bits, or None.

    Ties (several images at that distance: one image in two sets, or several images at equal
    distance) go to the smallest (set, path), so the report does not depend on the runner.

    Args:
        image_hash: the training image's pHash.
        index: the evaluation images' pHashes.
        images_by_hash: the (set, path)s of each pHash of `index`.
        max_hamming: `filter.eval_duplicate_max_hamming`.
    """
    matches = index.within(image_hash, max_hamming)
    if not matches:
        return None
    distance = matches[0][1]
    set_name, path = min(image for h, d in matches if d == distance for image in images_by_hash[h])
    return set_name, path, distance


def contamination_record_json(pair: PairMeta, match: tuple[str, str, int]) -> str:
    """One line of `contamination.jsonl`: the pair and the (set, path, distance) it is near."""
    set_name, path, distance = match
    record = {
        "image_url": pair.image_url,
        "page_url": pair.page_url,
        "sha256": pair.sha256,
        "text": pair.text,
        "image_phash": phash_hex(pair.phash),
        "eval_set": set_name,
        "eval_image": path,
        "hamming": distance,
    }
    return json.dumps(record, ensure_ascii=False)


def contamination_counts(out_dir: str, set_names: Iterable[str] = ()) -> dict[str, int]:
    """Training pairs removed as near-copies of each evaluation set's images, read from the
    filter's `out_dir/contamination.jsonl`: set name -> pairs, sorted by name.

    Args:
        out_dir: the filter's output folder.
        set_names: sets to report even when nothing near them was removed (count 0).

    Raises:
        InputError: `out_dir` has no contamination report, or a line of it is not one.
    """
    path = fs.join(out_dir, CONTAMINATION_JSONL)
    if not fs.exists(path):
        raise InputError(f"{path!r} does not exist: {out_dir!r} is not the output of the filter (run_filter)")
    counts = dict.fromkeys(set_names, 0)
    for number, line in enumerate(fs.read_text(path).splitlines(), start=1):
        try:
            name = json.loads(line)["eval_set"]
            counts[name] = counts.get(name, 0) + 1
        except (ValueError, KeyError, TypeError):
            raise InputError(f"{path}:{number}: not a contamination record ({line[:80]!r})") from None
    return dict(sorted(counts.items()))


def images_by_hash(hashed: list[tuple[int, tuple[str, str]]]) -> dict[int, list[tuple[str, str]]]:
    by_hash: dict[int, list[tuple[str, str]]] = {}
    for h, image in hashed:
        by_hash.setdefault(h, []).append(image)
    return by_hash


def write_contamination(decisions, eval_index, eval_by_hash, cfg: FilterConfig, out_dir: str) -> None:
    """`contamination.jsonl`: each pair dropped as `image_eval_duplicate`, with the evaluation
    image it is near (one file, empty when none is)."""
    (
        decisions
        | "EvalDuplicates"
        >> beam.FlatMapTuple(lambda meta, reason: [meta] if reason == "image_eval_duplicate" else [])
        | "NearestEvalImage"
        >> beam.Map(
            lambda meta, index, by_hash: contamination_record_json(
                meta, nearest_evaluation_image(meta.phash, index, by_hash, cfg.eval_duplicate_max_hamming)
            ),
            beam.pvalue.AsSingleton(eval_index),
            beam.pvalue.AsSingleton(eval_by_hash),
        )
        | "WriteContamination"
        >> beam.io.WriteToText(fs.join(out_dir, CONTAMINATION_JSONL), shard_name_template="", num_shards=1)
    )
