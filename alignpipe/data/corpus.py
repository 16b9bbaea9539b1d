"""A corpus that grows by one snapshot per scrape, so that incremental runs train on the union.

An incremental scrape (`scrape.state_dir`) writes only what is new or changed since the last
run. With `scrape.corpus_dir` set, each scrape also adds its pair shards to that folder as a
snapshot, and the scrape's output lists every finished snapshot in `corpus.json`; the filter
reads the shards of all of them (`input_folders`), so the model learns from everything seen so
far, not from this week's delta alone:

    <corpus_dir>/<UTC time>-<run>/pairs-*.tfrecord.gz
    <corpus_dir>/<UTC time>-<run>/snapshot.json     written last: a snapshot without it is unfinished
    <scrape output>/corpus.json                     {"snapshots": [folders, oldest first]}

The listing is taken when the scrape ends, so a rerun of the filter reads the same snapshots.
The snapshot is taken after the scrape has published its output and its new state: a task
killed between the two loses that run's pairs from the corpus (the state already counts them
as seen). An image whose bytes changed appears in the union with its old and new bytes (the scrape
state records no retractions); the filter's per-image rules see both.
"""

from __future__ import annotations

import hashlib
import logging
import time

from apache_beam.io.filesystems import FileSystems

from alignpipe import fs
from alignpipe.data.records import shard_pattern
from alignpipe.errors import InputError

log = logging.getLogger("alignpipe")

CORPUS_JSON = "corpus.json"
SNAPSHOT_JSON = "snapshot.json"


def add_snapshot(scrape_dir: str, corpus_dir: str, pairs: int) -> str:
    """Copies the pair shards of `scrape_dir` into a new snapshot folder of `corpus_dir`, once:
    a rerun for the same output (a retried task) finds the snapshot it made.

    Args:
        scrape_dir: a finished scrape's output folder.
        corpus_dir: the corpus (local or `gs://`).
        pairs: the pairs the shards hold, recorded in `snapshot.json`.

    Returns:
        The snapshot folder; "" when the scrape wrote no pairs (nothing new: no snapshot).
    """
    if not pairs:
        return ""
    for folder in snapshots(corpus_dir):
        if fs.read_json(fs.join(folder, SNAPSHOT_JSON)).get("source") == scrape_dir:
            return folder
    digest = hashlib.sha256(scrape_dir.encode()).hexdigest()[:8]
    folder = fs.join(corpus_dir, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{digest}")
    shards = fs.glob(shard_pattern(scrape_dir))
    fs.makedirs(folder)
    # (server-side copies on object stores)
    FileSystems.copy(shards, [fs.join(folder, path.rsplit("/", 1)[-1]) for path in shards])
    record = {"source": scrape_dir, "pairs": pairs, "shards": len(shards)}
    fs.write_json(fs.join(folder, SNAPSHOT_JSON), record)
    log.info("corpus: snapshot %s (%d pairs in %d shards)", folder, pairs, len(shards))
    return folder


def snapshots(corpus_dir: str) -> list[str]:
    """The finished snapshot folders of `corpus_dir`, oldest first."""
    done = fs.glob(fs.join(corpus_dir, "*", SNAPSHOT_JSON))
    return sorted(path[: -len(SNAPSHOT_JSON)].rstrip("/") for path in done)


def write_listing(scrape_dir: str, folders: list[str]) -> None:
    """Records in the scrape's output the snapshots the filter is to read."""
    fs.write_json(fs.join(scrape_dir, CORPUS_JSON), {"snapshots": folders})


def input_folders(in_dir: str) -> list[str]:
    """The folders whose shards a filter of `in_dir` reads: the snapshots its `corpus.json`
    lists, or `in_dir` itself.

    Raises:
        InputError: a listed snapshot is gone.
    """
    listing = fs.join(in_dir, CORPUS_JSON)
    if not fs.exists(listing):
        return [in_dir]
    folders = list(fs.read_json(listing)["snapshots"])
    missing = [f for f in folders if not fs.exists(fs.join(f, SNAPSHOT_JSON))]
    if missing:
        raise InputError(f"{listing}: snapshot {missing[0]} is gone (of {len(missing)} missing)")
    return folders
