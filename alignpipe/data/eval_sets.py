"""Readers for the held-out evaluation sets.

Retrieval: the Karpathy JSON format of Flickr30K / MSCOCO
(`{"images": [{"filename", "filepath"?, "split", "sentences": [{"raw"}, ...]}]}`),
image paths relative to the JSON file's folder (`filepath/filename`).

Classification: an ImageNet-style folder, one sub-folder of images per class, and a
`classnames.txt` whose lines are `<folder>\t<class name used in prompts>`.
"""

from __future__ import annotations

import dataclasses
import posixpath

from alignpipe import fs
from alignpipe.errors import InputError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")


@dataclasses.dataclass(frozen=True)
class RetrievalSet:
    """Images with several captions each.

    Attributes:
        image_paths: N image paths.
        captions: M captions (M = 5N in Flickr30K / COCO).
        caption_image: M ints, the index of each caption's image.
    """

    image_paths: tuple[str, ...]
    captions: tuple[str, ...]
    caption_image: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class ClassificationSet:
    """Images labelled with one of C classes; `class_names` fill the prompt templates."""

    image_paths: tuple[str, ...]
    labels: tuple[int, ...]
    class_names: tuple[str, ...]


def load_retrieval_set(json_path: str, split: str = "test") -> RetrievalSet:
    """Reads the `split` images of a Karpathy-format JSON file.

    Raises:
        InputError: the file is missing, is not Karpathy JSON, or has no `split` images.
    """
    if not json_path or not fs.exists(json_path):
        raise InputError(f"retrieval set {json_path!r} does not exist")
    try:
        entries = fs.read_json(json_path)["images"]
    except (ValueError, KeyError, TypeError):
        raise InputError(f"retrieval set {json_path!r} is not Karpathy-format JSON") from None
    root = posixpath.dirname(json_path)
    paths, captions, owner = [], [], []
    for entry in entries:
        if entry.get("split") != split:
            continue
        paths.append(
            fs.join(root, entry.get("filepath", ""), entry["filename"])
            if entry.get("filepath")
            else fs.join(root, entry["filename"])
        )
        for sentence in entry["sentences"]:
            captions.append(sentence["raw"])
            owner.append(len(paths) - 1)
    if not paths:
        raise InputError(f"retrieval set {json_path!r} has no images in split {split!r}")
    return RetrievalSet(tuple(paths), tuple(captions), tuple(owner))


def load_classification_set(folder: str) -> ClassificationSet:
    """Reads a class-folder classification set with its `classnames.txt`.

    Raises:
        InputError: the folder or `classnames.txt` is missing or a class has no images.
    """
    names_path = fs.join(folder, "classnames.txt") if folder else ""
    if not folder or not fs.exists(names_path):
        raise InputError(f"classification set {folder!r} has no classnames.txt")
    paths, labels, names = [], [], []
    for line in fs.read_text(names_path).splitlines():
        if not line.strip():
            continue
        sub, sep, name = line.partition("\t")
        if not sep:
            raise InputError(f"{names_path}: line {line!r} is not '<folder>\\t<class name>'")
        images = [p for p in fs.glob(fs.join(folder, sub, "*")) if p.lower().endswith(IMAGE_EXTENSIONS)]
        if not images:
            raise InputError(f"classification set {folder!r}: class folder {sub!r} has no images")
        paths += images
        labels += [len(names)] * len(images)
        names.append(name.strip())
    return ClassificationSet(tuple(paths), tuple(labels), tuple(names))
