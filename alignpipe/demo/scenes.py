"""Synthetic scenes of coloured shapes and captions that describe them.

The demo data: every image is a rendered `Scene` (one to three flat shapes on a
shaded background) and every caption names what is in it: shape, colour, size,
position and count, with varied wording so that a text encoder sees synonyms and
several sentence structures:

    "a large red circle on the left"
    "two small blue squares at the top"
    "picture of a green star in the middle on a dark background"
    "a yellow ring above a purple diamond"

Shapes are at least ~1/4 of the image's shorter side and the colours are far apart,
so a small CNN at 64x64 can tell colours, shapes and positions apart. Everything is
a pure function of a `random.Random`, hence deterministic for a given seed.

Example:
    >>> rng = random.Random(0)
    >>> scene = random_scene(rng)
    >>> image = render(scene, 96)           # PIL.Image, 96x96 RGB
    >>> text = caption(scene, rng)          # 3..20 words
"""

from __future__ import annotations

import dataclasses
import io
import math
import random
from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageDraw

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "ring", "diamond")
SHAPE_PLURALS = {s: s + "s" for s in SHAPES}

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (250, 140, 20),
    "yellow": (245, 225, 30),
    "green": (30, 160, 50),
    "blue": (30, 70, 230),
    "purple": (140, 40, 190),
    "pink": (250, 120, 200),
    "brown": (130, 75, 30),
}

BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (240, 240, 240),
    "gray": (150, 150, 155),
    "dark": (45, 45, 50),
    "cream": (240, 226, 185),
}
MAX_LIGHTING_AMPLITUDE = 40.0  # grey levels of the background's shading wave

SIZES: dict[str, float] = {"small": 0.30, "large": 0.48}  # fraction of the shorter side
POSITIONS: dict[str, tuple[float, float]] = {
    "left": (0.26, 0.5),
    "right": (0.74, 0.5),
    "top": (0.5, 0.26),
    "bottom": (0.5, 0.74),
    "center": (0.5, 0.5),
}
COUNT_WORDS = {2: ("two", "a pair of"), 3: ("three",)}

_POSITION_PHRASES = {
    "left": ("on the left", "at the left", "on the left side", "to the left"),
    "right": ("on the right", "at the right", "on the right side", "to the right"),
    "top": ("at the top", "near the top", "in the upper part", "at the top of the picture"),
    "bottom": ("at the bottom", "near the bottom", "in the lower part", "at the bottom of the picture"),
    "center": ("in the middle", "in the center", "in the centre", "in the middle of the picture"),
}
_SIZE_WORDS = {"small": ("small", "little", "tiny"), "large": ("large", "big", "huge")}
_PREFIXES = (
    "",
    "",
    "",
    "a picture of",
    "picture of",
    "an image of",
    "a drawing of",
    "photo of",
    "illustration of",
    "there is",
)
_BACKGROUND_PHRASES = ("on a {} background", "against a {} background", "over a {} backdrop")
_RELATIONS = {
    ("left", "right"): ("next to", "beside", "to the left of"),
    ("top", "bottom"): ("above", "over"),
}
MAX_CAPTION_WORDS = 20


@dataclasses.dataclass(frozen=True)
class SceneObject:
    """One shape, or a row/column of `count` identical shapes around `position`."""

    shape: str
    colour: str
    size: str
    position: str
    count: int = 1


@dataclasses.dataclass(frozen=True)
class Scene:
    """What an image shows: one or two objects on a shaded background.

    Attributes:
        objects: one object (or group), or two objects side by side / one above the other.
        background: a key of `BACKGROUNDS`.
        jitter: (dx, dy) shift of the objects, in fractions of the image.
        lighting: (angle, amplitude, frequency, phase) of a cosine wave of shading added
            to the background. Captions do not mention it; it gives each image its own
            low-frequency structure, as photos have, so that perceptual hashes tell apart
            scenes that differ only in colour.
    """

    objects: tuple[SceneObject, ...]
    background: str
    jitter: tuple[float, float] = (0.0, 0.0)
    lighting: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 0.0)

    def layout_key(self) -> tuple:
        """The scene without jitter and lighting: equal keys differ only by a shift and shading."""
        return (self.objects, self.background)


def random_scene(rng: random.Random) -> Scene:
    """Draws a single object (60%), a counted group (20%) or a pair of objects (20%)."""
    background = rng.choice(list(BACKGROUNDS))
    kind = rng.random()
    colours = list(COLOURS)
    if kind < 0.6:
        obj = SceneObject(
            rng.choice(SHAPES), rng.choice(colours), rng.choice(list(SIZES)), rng.choice(list(POSITIONS))
        )
        objects: tuple[SceneObject, ...] = (obj,)
    elif kind < 0.8:
        objects = (
            SceneObject(
                rng.choice(SHAPES),
                rng.choice(colours),
                "small",
                rng.choice(list(POSITIONS)),
                rng.choice((2, 3)),
            ),
        )
    else:
        first, second = rng.choice(list(_RELATIONS))
        c1, c2 = rng.sample(colours, 2)
        objects = (
            SceneObject(rng.choice(SHAPES), c1, rng.choice(list(SIZES)), first),
            SceneObject(rng.choice(SHAPES), c2, rng.choice(list(SIZES)), second),
        )
    jitter = (rng.uniform(-0.04, 0.04), rng.uniform(-0.04, 0.04))
    lighting = (
        rng.uniform(0, 2 * math.pi),
        rng.uniform(MAX_LIGHTING_AMPLITUDE / 2, MAX_LIGHTING_AMPLITUDE),
        rng.uniform(0.5, 1.5),
        rng.uniform(0, 2 * math.pi),
    )
    return Scene(objects, background, jitter, lighting)


def render(scene: Scene, size: int | tuple[int, int] = 96) -> Image.Image:
    """Draws `scene` as an RGB image of `size` pixels (int: square; or (width, height))."""
    width, height = (size, size) if isinstance(size, int) else size
    scale = 2  # draw at 2x, then downsample: anti-aliased edges
    image = _background(scene, width, height, scale)
    draw = ImageDraw.Draw(image)
    short = min(width, height) * scale
    for obj in scene.objects:
        radius = SIZES[obj.size] * short / 2 * (0.8 if obj.count == 3 else 1.0)  # three must fit a row
        for cx, cy in _centres(obj, len(scene.objects) > 1, scene.jitter):
            x = min(max(cx * width * scale, radius + scale), width * scale - radius - scale)
            y = min(max(cy * height * scale, radius + scale), height * scale - radius - scale)
            _draw_shape(draw, obj.shape, x, y, radius, COLOURS[obj.colour])
    return image.reduce(scale)


def _background(scene: Scene, width: int, height: int, scale: int) -> Image.Image:
    """The shaded background, computed at 1x and upsampled (it is smooth)."""
    angle, amplitude, frequency, phase = scene.lighting
    n = max(width, height)
    x = np.arange(width)[None, :] / n  # [1, W]
    y = np.arange(height)[:, None] / n  # [H, 1]
    wave = amplitude * np.cos(2 * math.pi * frequency * (math.cos(angle) * x + math.sin(angle) * y) + phase)
    base = np.asarray(BACKGROUNDS[scene.background], dtype=np.float32)  # [3]
    pixels = np.clip(base + wave[..., None], 0, 255).round().astype(np.uint8)  # [H, W, 3]
    image = Image.fromarray(pixels, "RGB")
    return image.resize((width * scale, height * scale), Image.Resampling.BILINEAR)


def _centres(obj: SceneObject, paired: bool, jitter: tuple[float, float]) -> list[tuple[float, float]]:
    x, y = POSITIONS[obj.position]
    if paired:  # two objects sit side by side: no shift along their shared axis
        jitter = (0.0, jitter[1]) if obj.position in ("left", "right") else (jitter[0], 0.0)
    x, y = x + jitter[0], y + jitter[1]
    if obj.count == 1:
        return [(x, y)]
    offsets = (-0.2, 0.2) if obj.count == 2 else (-0.31, 0.0, 0.31)
    if obj.position in ("left", "right"):  # a column
        return [(x, 0.5 + o + jitter[1]) for o in offsets]
    return [(0.5 + o + jitter[0], y) for o in offsets]  # a row


def _draw_shape(
    draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, fill: tuple[int, int, int]
) -> None:
    box = (cx - r, cy - r, cx + r, cy + r)
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        s = r * 0.85
        draw.rectangle((cx - s, cy - s, cx + s, cy + s), fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx + r, cy + 0.8 * r), (cx - r, cy + 0.8 * r)], fill=fill)
    elif shape == "star":
        points = []
        for k in range(10):
            radius = r if k % 2 == 0 else 0.45 * r
            angle = -math.pi / 2 + k * math.pi / 5
            points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
        draw.polygon(points, fill=fill)
    elif shape == "ring":
        draw.ellipse(box, outline=fill, width=max(1, round(0.45 * r)))
    elif shape == "diamond":
        draw.polygon([(cx, cy - r), (cx + 0.8 * r, cy), (cx, cy + r), (cx - 0.8 * r, cy)], fill=fill)
    else:
        raise ValueError(f"unknown shape {shape!r}; shapes are {SHAPES}")


def object_phrase(
    obj: SceneObject, rng: random.Random, with_size: bool | None = None, count_word: str | None = None
) -> str:
    """Names one object: "a small red circle", "three blue squares", "a pair of green stars".

    Args:
        obj: the object.
        rng: draws the synonyms.
        with_size: name the size; None: at random.
        count_word: the count word of a group; None: drawn from `COUNT_WORDS`.
    """
    if with_size is None:
        with_size = rng.random() < 0.5
    words = [rng.choice(_SIZE_WORDS[obj.size])] if with_size else []
    if obj.count == 1:
        words = words + [obj.colour, obj.shape]
        article = rng.choice(("a", "a", "one")) if words[0][0] not in "aeiou" else "an"
        return " ".join([article] + words)
    count_word = count_word or rng.choice(COUNT_WORDS[obj.count])
    return " ".join([count_word] + words + [obj.colour, SHAPE_PLURALS[obj.shape]])


def caption(scene: Scene, rng: random.Random) -> str:
    """A 3-20 word description of `scene` drawn from several templates and synonyms."""
    for _ in range(20):
        text = _caption_once(scene, rng)
        if len(text.split()) <= MAX_CAPTION_WORDS:
            return text
    return " ".join(object_phrase(o, rng, with_size=False) for o in scene.objects)


def _caption_once(scene: Scene, rng: random.Random) -> str:
    if len(scene.objects) == 2:
        body = _pair_phrase(scene.objects, rng)
    else:
        obj = scene.objects[0]
        position = rng.choice(_POSITION_PHRASES[obj.position])
        if obj.count > 1 and rng.random() < 0.3:
            line = "row" if obj.position in ("top", "bottom", "center") else "column"
            body = f"a {line} of {object_phrase(obj, rng, count_word=COUNT_WORDS[obj.count][0])} {position}"
        elif rng.random() < 0.2:
            body = f"{position}, {object_phrase(obj, rng)}"
        else:
            body = f"{object_phrase(obj, rng)} {position}"
    prefix = rng.choice(_PREFIXES)
    if prefix == "there is" and scene.objects[0].count > 1:
        prefix = "there are"
    if prefix and not body.startswith(tuple(p for ps in _POSITION_PHRASES.values() for p in ps)):
        body = f"{prefix} {body}"
    if rng.random() < 0.25:
        body += " " + rng.choice(_BACKGROUND_PHRASES).format(scene.background)
    return body


def _pair_phrase(objects: tuple[SceneObject, ...], rng: random.Random) -> str:
    a, b = objects
    if rng.random() < 0.5:
        relation = rng.choice(_RELATIONS[(a.position, b.position)])
        if relation == "beside":
            return f"{object_phrase(a, rng)} on the left {relation} {object_phrase(b, rng)}"
        return f"{object_phrase(a, rng)} {relation} {object_phrase(b, rng)}"
    pa, pb = rng.choice(_POSITION_PHRASES[a.position]), rng.choice(_POSITION_PHRASES[b.position])
    return f"{object_phrase(a, rng)} {pa} and {object_phrase(b, rng)} {pb}"


def encode(image: Image.Image, image_format: str = "png", quality: int = 90) -> bytes:
    """PNG or JPEG file bytes of `image` (deterministic for equal pixels)."""
    out = io.BytesIO()
    if image_format == "png":
        image.save(out, format="PNG", optimize=False)
    elif image_format == "jpeg":
        image.save(out, format="JPEG", quality=quality)
    else:
        raise ValueError(f"image_format must be 'png' or 'jpeg', not {image_format!r}")
    return out.getvalue()


def demo_pairs(n: int, seed: int, size: int = 96, image_format: str = "png") -> Iterator[tuple[bytes, str]]:
    """`n` (encoded image, caption) pairs of random scenes, the same for the same seed.

    Args:
        n: number of pairs.
        seed: random seed; equal seeds give byte-identical pairs.
        size: image side in pixels.
        image_format: "png" or "jpeg".

    Yields:
        (image file bytes, caption) tuples.
    """
    rng = random.Random(seed)
    for _ in range(n):
        scene = random_scene(rng)
        yield encode(render(scene, size), image_format), caption(scene, rng)
