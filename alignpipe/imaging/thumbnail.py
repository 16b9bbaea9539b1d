"""Small JPEG previews of kept images, for result pages that cannot reach the images' sources."""

from __future__ import annotations

import io
import warnings

from PIL import Image

THUMBNAIL_SIZE = 160  # longest side, pixels
THUMBNAIL_QUALITY = 80


def make_thumbnail(data: bytes, size: int = THUMBNAIL_SIZE, max_pixels: int = 0) -> bytes | None:
    """A JPEG of the image in `data` whose longest side is at most `size` pixels.

    Args:
        data: an encoded image file (any format Pillow reads; the first frame of an animation).
        size: the longest side of the thumbnail; smaller images keep their size.
        max_pixels: refuse images declaring more pixels than this (0: Pillow's own bomb guard).

    Returns:
        The JPEG bytes, or None when `data` is not a decodable image (or is over `max_pixels`).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                if max_pixels and image.width * image.height > max_pixels:
                    return None
                image.draft("RGB", (size, size))  # JPEG: decode at a reduced scale
                image = image.convert("RGB")
                image.thumbnail((size, size), Image.Resampling.LANCZOS)
                out = io.BytesIO()
                image.save(out, "JPEG", quality=THUMBNAIL_QUALITY, optimize=True)
                return out.getvalue()
    except (OSError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        return None
