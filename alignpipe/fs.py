"""The one file-system layer every stage reads and writes through.

Paths are local paths or URIs (`gs://bucket/...`); Beam's `FileSystems` resolves
the scheme, so the same stage code runs on a laptop and on Dataflow / Vertex AI.
"""

from __future__ import annotations

import json
import os

from apache_beam.io.filesystems import FileSystems


def join(base: str, *parts: str) -> str:
    return FileSystems.join(base, *parts)


def exists(path: str) -> bool:
    return FileSystems.exists(path)


def makedirs(path: str) -> None:
    """Creates a local folder (object stores have no folders: a no-op there)."""
    if "://" not in path:
        os.makedirs(path, exist_ok=True)


def glob(pattern: str) -> list[str]:
    """Paths matching `pattern`, sorted."""
    result = FileSystems.match([pattern])[0]
    return sorted(m.path for m in result.metadata_list)


def read_bytes(path: str) -> bytes:
    with FileSystems.open(path) as f:
        return f.read()


def write_bytes(path: str, data: bytes) -> None:
    parent = path.rsplit("/", 1)[0] if "/" in path else "."
    makedirs(parent)
    with FileSystems.create(path) as f:
        f.write(data)


def read_text(path: str) -> str:
    return read_bytes(path).decode("utf-8")


def write_text(path: str, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def read_json(path: str) -> object:
    return json.loads(read_text(path))


def write_json(path: str, obj: object) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def delete(paths: list[str]) -> None:
    """Deletes files (missing ones are an error, as in Beam's `FileSystems.delete`)."""
    if paths:
        FileSystems.delete(paths)
