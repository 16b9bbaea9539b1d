"""What earlier scrapes fetched, kept between runs so that a scheduled scrape is incremental.

With `scrape.state_dir` set, a scrape reads the state at its start, sends conditional
requests for the image URLs in it (`If-None-Match` with the ETag, `If-Modified-Since` with
the Last-Modified date) and writes pairs only for new or changed images; when it has
finished, the new state (this run's images merged with the earlier entries it did not
visit) replaces the old one.

Layout of `state_dir` (local or `gs://`):

| file                          | what                                                     |
|-------------------------------|----------------------------------------------------------|
| `CURRENT.json`                | `{"generation": G, "files": [...]}`: the state in force  |
| `G/images-*.jsonl.gz`         | one `ImageState` per line, as JSON                       |

A new generation is written beside the old one, then `CURRENT.json` is replaced (a rename
locally, one object write on GCS), then the old generation is deleted: a reader sees the
old state or the new one, never a mix. The state is read as a Beam source, one file per
element, so it never has to fit in one machine's memory.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import shutil
import zlib
from collections.abc import Iterator

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from alignpipe import fs
from alignpipe.errors import InputError

CURRENT_FILE = "CURRENT.json"
IMAGE_PREFIX = "images"
SUFFIX = ".jsonl.gz"


@dataclasses.dataclass(frozen=True)
class ImageState:
    """What the corpus holds of one image URL, and how to ask the server whether it changed.

    Attributes:
        url: the image URL as the pages link it (the key).
        final_url: the URL that answered, after redirects: the validators are its own.
        etag: the `ETag` header of that answer ("" when none).
        last_modified: its `Last-Modified` header ("" when none).
        sha256: hex SHA-256 of the bytes as downloaded.
        alts: the alt-texts already written as pairs with these bytes.
    """

    url: str
    final_url: str
    etag: str
    last_modified: str
    sha256: str
    alts: tuple[str, ...] = ()

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_json(cls, line: str) -> ImageState:
        """Raises ValueError (or KeyError / TypeError) for a line that is not an entry."""
        value = json.loads(line)
        fields = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(value, dict) or set(value) != fields:
            raise ValueError(f"expected an object with keys {sorted(fields)}")
        if not all(isinstance(value[k], str) for k in fields - {"alts"}):
            raise ValueError("url, final_url, etag, last_modified and sha256 must be strings")
        if not isinstance(value["alts"], list) or not all(isinstance(a, str) for a in value["alts"]):
            raise ValueError("alts must be a list of strings")
        return cls(**(value | {"alts": tuple(value["alts"])}))


@dataclasses.dataclass(frozen=True)
class StateVersion:
    """The state in force: its generation (a folder name) and its files ("" and () when none)."""

    generation: str = ""
    files: tuple[str, ...] = ()


def current_state(state_dir: str) -> StateVersion:
    """The state in force in `state_dir`; an empty `StateVersion` before the first run.

    Raises:
        InputError: `CURRENT.json` is unreadable, or names a file that does not exist.
    """
    pointer = fs.join(state_dir, CURRENT_FILE)
    if not fs.exists(pointer):
        return StateVersion()
    try:
        value = fs.read_json(pointer)
        generation, names = value["generation"], value["files"]
        if not isinstance(generation, str) or not all(isinstance(n, str) for n in names):
            raise TypeError("generation must be a string and files a list of strings")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        message = f"scrape.state_dir: {pointer} is not a state pointer ({e}); delete it to start afresh"
        raise InputError(message) from e
    files = tuple(fs.join(state_dir, generation, name) for name in names)
    missing = [p for p in files if not fs.exists(p)]
    if missing:
        raise InputError(f"scrape.state_dir: {pointer} names missing files: {missing[:3]}")
    return StateVersion(generation, files)


def read_image_states(path: str) -> Iterator[ImageState]:
    """Streams the entries of one state file.

    Raises:
        InputError: the file is unreadable, or a line is not an entry (naming file and line).
    """
    number = 0
    try:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as raw:
            for line in gzip.GzipFile(fileobj=raw, mode="rb"):
                number += 1
                if line.strip():
                    yield ImageState.from_json(line.decode("utf-8"))
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        where = f"line {number}" if number else "start"
        raise InputError(f"scrape.state_dir: state file {path} is corrupt at {where}: {e}") from e


class StateFileWriter:
    """Writes `ImageState`s into one gzipped JSONL file; `close()` gives it its final name."""

    def __init__(self, path: str) -> None:
        self.path = path
        fs.makedirs(path.rsplit("/", 1)[0])
        self._raw = FileSystems.create(path + ".tmp", compression_type=CompressionTypes.UNCOMPRESSED)
        self._gzip = gzip.GzipFile(fileobj=self._raw, mode="wb")

    def write(self, state: ImageState) -> None:
        self._gzip.write(state.to_json().encode("utf-8") + b"\n")

    def close(self) -> None:
        self._gzip.close()
        self._raw.close()
        if fs.exists(self.path):
            fs.delete([self.path])
        FileSystems.rename([self.path + ".tmp"], [self.path])

    def abort(self) -> None:
        self._gzip.close()
        self._raw.close()
        fs.delete([self.path + ".tmp"])


def join_known_images(
    pipeline: beam.Pipeline, uses: beam.PCollection, state_files: tuple[str, ...], kept_prefix: str
) -> beam.PCollection:
    """(image URL, use) -> (image URL, ([use], its earlier `ImageState` or None)), one per URL.

    The earlier entries of URLs not used this time are written as they are into
    `kept_prefix-*.jsonl.gz`, to be kept in the new state (the download units write the others).
    """
    known = (
        pipeline
        | "StateFiles" >> beam.Create(list(state_files))
        | "SpreadStateFiles" >> beam.Reshuffle()
        | "ReadState" >> beam.FlatMap(read_image_states)
        | "KeyStateByUrl" >> beam.Map(lambda state: (state.url, state))
    )
    joined = (
        {"uses": uses, "known": known}
        | "GroupByImage" >> beam.CoGroupByKey()
        | "SplitUnused" >> beam.ParDo(_SplitUnusedFn()).with_outputs("unused", main="images")
    )
    _ = (
        joined.unused
        | "UnusedToJson" >> beam.Map(ImageState.to_json)
        | "WriteUnusedState" >> beam.io.WriteToText(kept_prefix, file_name_suffix=SUFFIX)
    )
    return joined.images


class _SplitUnusedFn(beam.DoFn):
    def process(self, element: tuple[str, dict[str, list]]):
        url, groups = element
        known = groups["known"][0] if groups["known"] else None
        if groups["uses"]:
            yield url, (list(groups["uses"]), known)
        elif known is not None:
            yield beam.pvalue.TaggedOutput("unused", known)


def publish_state(staged: list[str], state_dir: str, generation: str, old: StateVersion) -> None:
    """Makes the `staged` files the state in force, as generation `generation`.

    Safe to call again after an interruption: files already copied are copied again, and
    the old generation's files are deleted only once `CURRENT.json` names the new one.
    """
    names = [p.rsplit("/", 1)[-1] for p in staged]
    for source, name in zip(staged, names, strict=True):
        _copy(source, fs.join(state_dir, generation, name))
    pointer = fs.join(state_dir, CURRENT_FILE)
    fs.write_json(pointer + ".tmp", {"generation": generation, "files": sorted(names)})
    FileSystems.rename([pointer + ".tmp"], [pointer])
    if old.generation and old.generation != generation:
        fs.delete([p for p in old.files if fs.exists(p)])
        fs.delete_tree(fs.join(state_dir, old.generation))


def _copy(source: str, target: str) -> None:
    """Copies bytes as they are, across file systems (a local staging folder to gs://)."""
    fs.makedirs(target.rsplit("/", 1)[0])
    raw = CompressionTypes.UNCOMPRESSED
    with FileSystems.open(source, compression_type=raw) as src:
        with FileSystems.create(target, compression_type=raw) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
