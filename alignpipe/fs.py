"""The one file-system layer every stage reads and writes through.

Paths are local paths or URIs (`gs://bucket/...`); Beam's `FileSystems` resolves
the scheme, so the same stage code runs on a laptop and on Dataflow / Vertex AI.

Object stores have no folders, only object names with `/` in them: here a folder of an
object store exists while some object's name starts with it, and `delete_tree` removes
every object under it, so that folder code means the same on both.
"""

from __future__ import annotations

import json
import os
import shutil

from apache_beam.io.filesystems import FileSystems


def join(base: str, *parts: str) -> str:
    return FileSystems.join(base, *parts)


def exists(path: str) -> bool:
    """Whether `path` is a file or a folder (in an object store: a prefix of some object)."""
    if FileSystems.exists(path):
        return True
    return _is_remote(path) and bool(_objects_under(path, limit=1))


def _is_remote(path: str) -> bool:
    return "://" in path


def _objects_under(folder: str, limit: int | None = None) -> list[str]:
    pattern = folder.rstrip("/") + "/**"
    result = FileSystems.match([pattern], limits=[limit] if limit else None)[0]
    return [m.path for m in result.metadata_list]


def makedirs(path: str) -> None:
    """Creates a local folder (object stores have no folders: a no-op there)."""
    if not _is_remote(path):
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


def delete_tree(path: str) -> None:
    """Deletes a folder and everything in it, or a file; nothing when there is none.

    Beam's `FileSystems.delete` of a folder's name deletes it only on a local disk: in an
    object store it names one object, so the objects under it would stay.
    """
    if not _is_remote(path):
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.remove(path)
        return
    if _objects_under(path, limit=1):
        FileSystems.delete([path.rstrip("/") + "/**"])  # one listing, batched deletes
    if FileSystems.exists(path):
        FileSystems.delete([path])
