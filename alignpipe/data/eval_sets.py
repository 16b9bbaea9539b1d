"""Readers for the held-out evaluation sets.

Retrieval: the Karpathy JSON format of Flickr30K / MSCOCO
(`{"images": [{"filename", "filepath"?, "split", "sentences": [{"raw"}, ...]}]}`),
image paths relative to the JSON file's folder (`filepath/filename`).

Classification: one sub-folder of images per class, and a `classnames.txt` whose lines are
`<folder>\t<class name used in prompts>`. An ImageNet-style folder (sub-folders named by WordNet
id, `n01440764` ...) needs no `classnames.txt`: CLIP's class names and its 80 prompt templates,
shipped in `imagenet/`, are used. A `templates.txt` in the folder (one template per line, `{}`
for the class name) gives the set its own templates.

Sets are named (`eval.retrieval_sets`, `eval.classification_sets`: `name=path` items); the
evaluation prefixes each set's metrics with its name, and the filter drops training images near
any image of any set.
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
import re

from alignpipe import fs
from alignpipe.config import EvalConfig, named_path
from alignpipe.errors import InputError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif")
CLASSNAMES_FILE = "classnames.txt"
TEMPLATES_FILE = "templates.txt"
_IMAGENET_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "imagenet")
_WORDNET_ID = re.compile(r"n\d{8}")


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
    """Images labelled with one of C classes; `class_names` fill the prompt templates.

    `templates` are the set's own prompt templates (its `templates.txt`, or CLIP's for an
    ImageNet-style folder); empty: use `eval.prompt_templates`.
    """

    image_paths: tuple[str, ...]
    labels: tuple[int, ...]
    class_names: tuple[str, ...]
    templates: tuple[str, ...] = ()


def retrieval_sets(cfg: EvalConfig) -> list[tuple[str, str]]:
    """(name, Karpathy JSON path) of each configured retrieval set."""
    return [named_path(item) for item in cfg.retrieval_sets]


def classification_sets(cfg: EvalConfig) -> list[tuple[str, str]]:
    """(name, folder) of each configured classification set."""
    return [named_path(item) for item in cfg.classification_sets]


def retrieval_splits(json_path: str) -> list[str]:
    """Every split named in a Karpathy-format JSON file.

    Raises:
        InputError: the file is missing or is not Karpathy JSON.
    """
    if not fs.exists(json_path):
        raise InputError(f"retrieval set {json_path!r} does not exist")
    try:
        entries = fs.read_json(json_path)["images"]
        return sorted({entry["split"] for entry in entries if entry.get("split")})
    except (ValueError, KeyError, TypeError, AttributeError):
        raise InputError(f"retrieval set {json_path!r} is not Karpathy-format JSON") from None


def evaluation_images(cfg: EvalConfig) -> list[tuple[str, str]]:
    """(set name, image path) of every image of every configured set, all retrieval splits
    included: what the filter's image_eval_duplicate rule checks training images against.

    Raises:
        InputError: a configured set is missing or malformed.
    """
    images: list[tuple[str, str]] = []
    for name, json_path in retrieval_sets(cfg):
        for split in retrieval_splits(json_path):
            images += [(name, path) for path in load_retrieval_set(json_path, split).image_paths]
    for name, folder in classification_sets(cfg):
        images += [(name, path) for path in load_classification_set(folder).image_paths]
    return sorted(set(images))


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
    """Reads a class-folder classification set with its `classnames.txt`, or an ImageNet-style
    folder (WordNet-id sub-folders) with CLIP's class names and templates.

    Raises:
        InputError: the folder is missing, has neither `classnames.txt` nor WordNet-id class
            folders, a line of `classnames.txt` or `templates.txt` is malformed, or a class has
            no images.
    """
    if not folder or not fs.exists(folder):
        raise InputError(f"classification set {folder!r} does not exist")
    names_path = fs.join(folder, CLASSNAMES_FILE)
    templates: tuple[str, ...] = ()
    if fs.exists(names_path):
        lines = fs.read_text(names_path).splitlines()
    else:
        lines = _imagenet_classnames(folder)
        templates = tuple(_read_lines(os.path.join(_IMAGENET_DIR, TEMPLATES_FILE)))
    if fs.exists(fs.join(folder, TEMPLATES_FILE)):
        templates = tuple(_read_lines(fs.join(folder, TEMPLATES_FILE)))
        bad = [t for t in templates if "{}" not in t]
        if bad:
            raise InputError(
                f"{fs.join(folder, TEMPLATES_FILE)}: template {bad[0]!r} has no {{}} for the class"
            )
    paths, labels, names = [], [], []
    for line in lines:
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
    return ClassificationSet(tuple(paths), tuple(labels), tuple(names), templates)


def _imagenet_classnames(folder: str) -> list[str]:
    """`classnames.txt` lines for the WordNet-id folders present (CLIP's names, index order)."""
    parents = {posixpath.basename(posixpath.dirname(p)) for p in fs.glob(fs.join(folder, "*", "*"))}
    present = {name for name in parents if _WORDNET_ID.fullmatch(name)}
    if not present:
        raise InputError(
            f"classification set {folder!r} has no {CLASSNAMES_FILE} and no ImageNet-style class "
            "folders (WordNet ids such as n01440764)"
        )
    shipped = _read_lines(os.path.join(_IMAGENET_DIR, CLASSNAMES_FILE))
    known = {line.partition("\t")[0] for line in shipped}
    unknown = sorted(present - known)
    if unknown:
        raise InputError(
            f"classification set {folder!r}: class folder {unknown[0]!r} is not an ImageNet-1k "
            f"WordNet id; add a {CLASSNAMES_FILE}"
        )
    return [line for line in shipped if line.partition("\t")[0] in present]


def _read_lines(path: str) -> list[str]:
    return [line for line in fs.read_text(path).splitlines() if line.strip()]
