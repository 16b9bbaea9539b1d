"""What the scrape learns from a downloaded image file, and the resized copy it stores.

`describe_image` runs in threads beside the download's event loop, off the network path: it
checks the magic bytes (the server's content type is not trusted), reads the size from the header,
refuses decompression bombs before decoding, hashes the bytes and, when asked, resizes the
way img2dataset's `resize_mode`s do. Every file ends in one outcome:

| outcome           | meaning                                                        |
|-------------------|----------------------------------------------------------------|
| `ok`              | an image; `ImageFacts` holds its facts (and resized bytes)     |
| `not_an_image`    | the bytes are not JPEG, PNG, GIF, WebP or BMP                  |
| `too_many_pixels` | the header declares more than `max_pixels` pixels              |
| `truncated`       | the file is cut short, or its image data cannot be decoded     |

Without resizing, the file is not decoded: its header is parsed and its end checked for
the format's end marker, which catches files cut short in transit, the common case.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import warnings

from PIL import Image

from alignpipe.imaging.phash import phash

FORMATS = {"JPEG": "jpeg", "MPO": "jpeg", "PNG": "png", "GIF": "gif", "WEBP": "webp", "BMP": "bmp"}
RESIZE_MODES = ("no", "keep_ratio", "center_crop")


@dataclasses.dataclass(frozen=True)
class ImageFacts:
    """The result of `describe_image`.

    Attributes:
        outcome: `ok` or a failure of the module docstring's table.
        image_format: the stored file's format (`jpeg`, `png`, ...).
        width, height: pixels of the stored file.
        original_width, original_height: pixels of the downloaded file.
        sha256: hex SHA-256 of the downloaded bytes.
        encoded: the resized file, or None when the downloaded bytes are stored as they are.
        phash: the stored image's 64-bit pHash when it was decoded here (a resize), else None:
            the filter then hashes it, so every image is decoded once.
        error: a one-line reason when not `ok`.
    """

    outcome: str
    image_format: str = ""
    width: int = 0
    height: int = 0
    original_width: int = 0
    original_height: int = 0
    sha256: str = ""
    encoded: bytes | None = None
    phash: int | None = None
    error: str = ""


def sniff_format(data: bytes) -> str | None:
    """The image format named by the file's magic bytes, or None."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:2] == b"BM":
        return "bmp"
    return None


def is_complete(data: bytes, image_format: str) -> bool:
    """True when the file ends as its format requires (so it was not cut short)."""
    tail = data[-2048:].rstrip(b"\x00\r\n\t ")
    if image_format == "jpeg":
        return b"\xff\xd9" in tail
    if image_format == "png":
        return b"IEND" in tail[-64:]
    if image_format == "gif":
        return tail.endswith(b";")
    if image_format == "webp":
        return len(data) >= int.from_bytes(data[4:8], "little") + 8
    if image_format == "bmp":
        return len(data) >= int.from_bytes(data[2:6], "little")
    return False


def describe_image(
    data: bytes, resize_mode: str = "no", image_size: int = 256, jpeg_quality: int = 95, max_pixels: int = 0
) -> ImageFacts:
    """Checks, measures, hashes and (for `keep_ratio` / `center_crop`) resizes an image file.

    Args:
        data: the downloaded file.
        resize_mode: `no` keeps the bytes; `keep_ratio` shrinks the shorter side to
            `image_size`; `center_crop` also crops the centre square. Images already that
            small are kept as they are; nothing is enlarged.
        image_size: target of the shorter side, pixels.
        jpeg_quality: quality of the re-encoded JPEGs.
        max_pixels: refuse headers declaring more pixels (0: no limit).

    Returns:
        `ImageFacts`; never raises for bad input.
    """
    image_format = sniff_format(data)
    if image_format is None:
        return ImageFacts("not_an_image", error=f"unknown magic bytes {data[:8]!r}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
        width, height = image.size
    except Image.DecompressionBombError as e:  # PIL's own limit, far above any sane max_pixels
        return ImageFacts("too_many_pixels", error=str(e))
    except (OSError, SyntaxError, ValueError) as e:
        return ImageFacts("truncated", error=f"unreadable {image_format} header: {e}")
    if max_pixels and width * height > max_pixels:
        return ImageFacts("too_many_pixels", error=f"{width}x{height} is over {max_pixels} pixels")
    if width < 1 or height < 1:
        return ImageFacts("truncated", error=f"empty {width}x{height} image")
    sha256 = hashlib.sha256(data).hexdigest()
    facts = ImageFacts("ok", image_format, width, height, width, height, sha256)
    if resize_mode == "no" or min(width, height) <= image_size and resize_mode == "keep_ratio":
        if not is_complete(data, image_format):
            return ImageFacts("truncated", error=f"{image_format} file ends before its end marker")
        return facts
    try:
        encoded, fmt, size, image_hash = _resized(image, resize_mode, image_size, jpeg_quality)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        return ImageFacts("truncated", error=f"cannot decode {image_format}: {e}")
    return dataclasses.replace(
        facts, image_format=fmt, width=size[0], height=size[1], encoded=encoded, phash=image_hash
    )


def decode_image_facts(data: bytes, max_pixels: int = 0) -> tuple[bool, int, int, int | None]:
    """(decodable, width, height, pHash) of an image file, decoded under a pixel cap.

    The filter's decode of images the scrape stored as downloaded. The header is read first,
    as `describe_image` does: an image declaring more than `max_pixels` pixels (or over PIL's
    own decompression-bomb limit) is not decoded and comes back as `(False, width, height,
    None)`, undecodable under the cap, so a record the scrape would have refused never costs
    its pixels in memory. A decoder failure on web bytes means undecodable, `(False, 0, 0,
    None)`; running out of memory is not a property of the file and propagates.

    Args:
        data: the image file.
        max_pixels: the cap (the scrape's `scrape.max_image_pixels`); 0: PIL's limit only.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if max_pixels and width * height > max_pixels:
                return False, width, height, None
            image.load()
        return True, width, height, phash(image)
    except MemoryError:
        raise
    except Exception:  # untrusted web bytes: PIL's decoders raise many kinds for broken files
        return False, 0, 0, None


def _target_size(width: int, height: int, image_size: int) -> tuple[int, int]:
    scale = image_size / min(width, height)
    if scale >= 1:
        return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))


def _resized(
    image: Image.Image, mode: str, image_size: int, quality: int
) -> tuple[bytes, str, tuple[int, int], int]:
    """Decodes at the smallest size that still covers the target, box-reduces by an integer
    factor, resamples the rest, and encodes a JPEG (transparency matted onto white, as
    img2dataset does, but after the resize, where it costs little). Also returns the pHash of
    the stored pixels."""
    target = _target_size(*image.size, image_size)
    if image.format == "JPEG":
        image.draft("RGB", target)  # DCT-domain downscaling: decode at 1/2, 1/4 or 1/8 size
    image.load()
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    image = image.convert("RGBA" if has_alpha else "RGB")
    if image.size != target:
        image = image.resize(target, Image.Resampling.BOX, reducing_gap=1.0)  # area averaging
    if mode == "center_crop":
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        image = image.crop((left, top, left + side, top + side))
    if has_alpha:
        matted = Image.new("RGB", image.size, (255, 255, 255))
        matted.paste(image, mask=image.getchannel("A"))
        image = matted
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue(), "jpeg", image.size, phash(image)
