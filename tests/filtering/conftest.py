"""Images for the filtering tests: busy random scenes that pHash tells apart."""

from __future__ import annotations

import io
import random

import pytest
from PIL import Image, ImageDraw


def make_scene(seed: int, width: int = 64, height: int = 64) -> Image.Image:
    """A random RGB scene of six shapes on a coloured background, deterministic in `seed`."""
    rng = random.Random(seed)

    def colour() -> tuple[int, int, int]:
        return rng.randrange(256), rng.randrange(256), rng.randrange(256)

    image = Image.new("RGB", (width, height), colour())
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x0, y0 = rng.uniform(-0.2, 0.8) * width, rng.uniform(-0.2, 0.8) * height
        x1, y1 = x0 + rng.uniform(0.2, 0.6) * width, y0 + rng.uniform(0.2, 0.6) * height
        if rng.random() < 0.5:
            draw.ellipse((x0, y0, x1, y1), fill=colour())
        else:
            draw.rectangle((x0, y0, x1, y1), fill=colour())
    return image


def encode(image: Image.Image, fmt: str = "PNG", **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


@pytest.fixture
def scene():
    return make_scene
