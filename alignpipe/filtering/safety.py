"""Unsafe-content inputs of the filter: an alt-text word list and a pluggable image scorer.

Both are off by default; the rules that use them (`text_unsafe`, `image_nsfw`) are in
`alignpipe.filtering.rules`, this module loads and checks what those rules are given.

Word list (`filter.unsafe_alt_words`): a UTF-8 text file, one word or phrase per line;
`#` starts a comment, blank lines are skipped. Each line is tokenized like an alt-text
(`rules.alt_unigrams`), so matching is case-insensitive and by whole unigrams: "foo bar"
matches "Foo, BAR!" but not "foobar". The project ships no list.

Image scorer (`filter.nsfw_image_scorer`): `"package.module:callable"`, any importable
callable of the `ImageScorer` protocol: image file bytes in, NSFW probability in [0, 1]
out. `image_nsfw` drops a pair whose score is >= `filter.nsfw_image_threshold`. The
filter loads the scorer once per worker (`load_image_scorer`, in a `DoFn.setup`), calls
it once per distinct decodable image through `nsfw_score`, and records the result in
`PairFacts.nsfw_score`.

Example scorer module, for an open_clip image embedding + a LAION-style linear NSFW head
(neither ships here; install them in the data image and keep the weights beside it):

    # my_safety/clip_nsfw.py; config: filter.nsfw_image_scorer=my_safety.clip_nsfw:score
    import functools, io
    from PIL import Image

    @functools.cache
    def _model():  # loaded on the first call, once per worker process
        import open_clip, torch
        model, _, preprocess = open_clip.create_model_and_transforms(
            "ViT-L-14", pretrained="/models/vit-l-14.bin")
        head = torch.load("/models/nsfw_head.pt")  # Linear(768, 1) + sigmoid
        return model.eval(), preprocess, head.eval()

    def score(image_bytes: bytes) -> float:
        import torch
        model, preprocess, head = _model()
        image = preprocess(Image.open(io.BytesIO(image_bytes)).convert("RGB"))[None]
        with torch.no_grad():
            embedding = model.encode_image(image)
            embedding = embedding / embedding.norm(dim=-1, keepdim=True)
            return float(torch.sigmoid(head(embedding))[0, 0])
"""

from __future__ import annotations

import importlib
import math
from typing import Protocol

from alignpipe import fs
from alignpipe.errors import InputError
from alignpipe.filtering.rules import UnsafeWordList, alt_unigrams


class ImageScorer(Protocol):
    """What `filter.nsfw_image_scorer` names: a callable scoring one image.

    Called with the image file bytes as downloaded (any format PIL decodes; only
    decodable images are scored), it returns the probability that the image is
    NSFW, a float in [0, 1]. It must be safe to call many times in one process and
    should load its model lazily (on the first call), so that importing it is cheap.
    """

    def __call__(self, image_bytes: bytes) -> float: ...


def load_unsafe_words(path: str) -> UnsafeWordList:
    """Reads a word list for the `text_unsafe` rule.

    Args:
        path: local path or URI of a UTF-8 file, one word or phrase per line, `#` comments.

    Returns:
        The entries as unigram tuples.

    Raises:
        InputError: the file is missing, unreadable or not UTF-8, a line has no word
            (letters or digits) besides a comment, or the list has no entries.
    """
    if not fs.exists(path):
        raise InputError(f"unsafe alt-text word list {path!r} (filter.unsafe_alt_words) does not exist")
    try:
        text = fs.read_bytes(path).decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"unsafe alt-text word list {path!r} is not UTF-8 ({e.reason})") from None
    except Exception as e:  # OSError, or BeamIOError from the gs:// file system
        raise InputError(f"unsafe alt-text word list {path!r} cannot be read: {e}") from None
    phrases = set()
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        words = tuple(alt_unigrams(entry))
        if not words:
            raise InputError(
                f"unsafe alt-text word list {path!r}, line {number}: {entry!r} has no word "
                "(alt-texts are matched by words of letters and digits)"
            )
        phrases.add(words)
    if not phrases:
        raise InputError(
            f"unsafe alt-text word list {path!r} has no entries "
            "(filter.unsafe_alt_words='' turns the rule off)"
        )
    return UnsafeWordList(frozenset(phrases))


def load_image_scorer(spec: str) -> ImageScorer:
    """Imports the callable named by `filter.nsfw_image_scorer`.

    Args:
        spec: `"package.module:callable"`; the part after the colon may be dotted
            (`"module:Class.method"`).

    Raises:
        InputError: the spec is malformed, the module does not import, the attribute
            is missing or is not callable.
    """
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute or ":" in attribute:
        raise InputError(f'filter.nsfw_image_scorer={spec!r} is not of the form "package.module:callable"')
    try:
        target = importlib.import_module(module_name)
    except Exception as e:  # ImportError, or whatever the module raises while importing
        raise InputError(
            f"filter.nsfw_image_scorer={spec!r}: module {module_name!r} does not import ({e!r}); "
            "install it in the data image or put it on PYTHONPATH"
        ) from None
    for name in attribute.split("."):
        if not hasattr(target, name):
            raise InputError(
                f"filter.nsfw_image_scorer={spec!r}: module {module_name!r} has no attribute {attribute!r}"
            )
        target = getattr(target, name)
    if not callable(target):
        raise InputError(
            f"filter.nsfw_image_scorer={spec!r} is a {type(target).__name__}, not a callable "
            "(image bytes -> float)"
        )
    return target


def nsfw_score(scorer: ImageScorer, image_bytes: bytes, spec: str = "") -> float:
    """The scorer's score for one image, checked to be a probability.

    Args:
        scorer: from `load_image_scorer`.
        image_bytes: the image file as downloaded.
        spec: the scorer's `filter.nsfw_image_scorer`, for the error message.

    Raises:
        InputError: the scorer returned something that is not a number in [0, 1].
    """
    raw = scorer(image_bytes)
    try:
        score = float(raw)
    except (TypeError, ValueError):
        score = math.nan
    if not 0.0 <= score <= 1.0:  # also catches NaN
        raise InputError(
            f"filter.nsfw_image_scorer={spec!r} returned {raw!r}; a scorer must return a float in [0, 1]"
        )
    return score
