"""64-bit DCT perceptual hashes (pHash) of images, as COYO-700M uses for near-duplicates.

The hash follows the common pHash recipe (Zauner 2010; the `imagehash` package's
`phash`, bit for bit): grayscale, Lanczos resize to 32x32, 2-D DCT-II, keep the
top-left 8x8 low-frequency block, and set each bit where a coefficient is above
the block's median. Bits are read row-major, the first bit being the most
significant, so `phash_hex` prints the same 16 hex digits as `str(imagehash.phash(img))`.

Two images are near-duplicates when the Hamming distance of their hashes is small
(re-encoding or mild resizing flips a few bits; unrelated images differ in ~32).

Blocklist files (`read_blocklist`) hold one hash per line as 16 hex digits;
blank lines and text after `#` are ignored.

Example:
    >>> from PIL import Image, ImageDraw
    >>> img = Image.new("RGB", (96, 96), "skyblue")
    >>> ImageDraw.Draw(img).ellipse((10, 10, 50, 50), fill="red")
    >>> hamming(phash(img), phash(img.resize((86, 86)))) <= 4
    True

Flat or smoothly graded images have almost no low-frequency structure: their
bits follow rounding noise, so do not rely on pHash for blank images.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator

import numpy as np
from PIL import Image

from alignpipe import fs
from alignpipe.errors import InputError

HASH_SIZE = 8  # the hash is HASH_SIZE x HASH_SIZE bits
IMAGE_SIZE = 32  # DCT input is IMAGE_SIZE x IMAGE_SIZE pixels
HASH_BITS = HASH_SIZE * HASH_SIZE


@functools.cache
def _dct_matrix(n: int) -> np.ndarray:
    """The unnormalised DCT-II matrix `C`, so that `C @ x` is `scipy.fft.dct(x)`.

    `C[k, i] = 2 cos(pi k (2 i + 1) / (2 n))`.

    Returns:
        float64 array of shape [n, n].
    """
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    return 2.0 * np.cos(np.pi * k * (2 * i + 1) / (2 * n))


def dct_2d(pixels: np.ndarray) -> np.ndarray:
    """Unnormalised 2-D DCT-II of a square block (DCT of the columns, then of the rows).

    Args:
        pixels: float array of shape [n, n].

    Returns:
        float64 array of shape [n, n]; `[0, 0]` is the DC term.
    """
    c = _dct_matrix(pixels.shape[0])
    return c @ pixels @ c.T


def phash(image: Image.Image) -> int:
    """The 64-bit perceptual hash of `image`.

    Args:
        image: any PIL image (any mode or size; alpha is dropped).

    Returns:
        An int in [0, 2**64): bit 63 is the top-left DCT coefficient's bit.
    """
    gray = image.convert("L").resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.LANCZOS)
    pixels = np.asarray(gray, dtype=np.float64)  # [32, 32]
    low = dct_2d(pixels)[:HASH_SIZE, :HASH_SIZE]  # [8, 8]
    bits = (low > np.median(low)).ravel()
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return value


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two hashes."""
    return (a ^ b).bit_count()


def phash_hex(h: int) -> str:
    """A hash as 16 lowercase hex digits, e.g. `"c3b1e0f00f0f8e1c"`."""
    return f"{h:016x}"


def parse_phash_hex(text: str) -> int:
    """Inverse of `phash_hex`.

    Raises:
        ValueError: `text` is not 1..16 hex digits.
    """
    text = text.strip().lower()
    if not 0 < len(text) <= HASH_BITS // 4 or any(ch not in "0123456789abcdef" for ch in text):
        raise ValueError(f"{text!r} is not a 64-bit hex pHash")
    return int(text, 16)


class PHashIndex:
    """A set of hashes that answers "is any within Hamming distance d of h?" quickly.

    Multi-index hashing (Norouzi et al., 2012): the 64 bits are cut into
    `radius + 1` contiguous segments; by the pigeonhole principle two hashes at
    distance <= radius agree exactly on at least one segment, so a query looks up
    its own segments in one table each and checks only those candidates. A query
    with a larger distance than `radius` falls back to a linear scan.

    Example:
        >>> index = PHashIndex([0b1011, 1 << 63], radius=2)
        >>> index.has_within(0b1000, 2), index.has_within(0b0100, 1)
        (True, False)
        >>> index.nearest(0b1000, 2), index.nearest(0b0100, 1)
        ((11, 2), None)
    """

    def __init__(self, hashes: Iterable[int], radius: int):
        self.hashes = tuple(dict.fromkeys(hashes))
        self.radius = radius
        n = min(radius + 1, HASH_BITS)
        edges = [round(i * HASH_BITS / n) for i in range(n + 1)]
        self._segments = [(lo, (1 << (hi - lo)) - 1) for lo, hi in zip(edges, edges[1:], strict=False)]
        self._tables: list[dict[int, list[int]]] = [{} for _ in self._segments]
        for h in self.hashes:
            for table, (shift, mask) in zip(self._tables, self._segments, strict=True):
                table.setdefault((h >> shift) & mask, []).append(h)

    def __len__(self) -> int:
        return len(self.hashes)

    def has_within(self, h: int, max_hamming: int) -> bool:
        """Whether some indexed hash is at Hamming distance <= `max_hamming` from `h`."""
        return any(hamming(h, other) <= max_hamming for other in self._candidates(h, max_hamming))

    def within(self, h: int, max_hamming: int) -> list[tuple[int, int]]:
        """(hash, distance) of every indexed hash at distance <= `max_hamming` from `h`,
        nearest first (ties: the smaller hash)."""
        found = {other: hamming(h, other) for other in self._candidates(h, max_hamming)}
        return sorted(((o, d) for o, d in found.items() if d <= max_hamming), key=lambda m: (m[1], m[0]))

    def nearest(self, h: int, max_hamming: int) -> tuple[int, int] | None:
        """(hash, distance) of the indexed hash nearest to `h` (ties: the smaller hash), or
        None when none is within `max_hamming`."""
        return next(iter(self.within(h, max_hamming)), None)

    def _candidates(self, h: int, max_hamming: int) -> Iterator[int]:
        """The indexed hashes that share a segment with `h` (a superset of those within
        `max_hamming` when it is <= `radius`; every hash otherwise), possibly repeated."""
        if max_hamming > self.radius:
            yield from self.hashes
            return
        for table, (shift, mask) in zip(self._tables, self._segments, strict=True):
            yield from table.get((h >> shift) & mask, ())


def has_near_duplicate(h: int, hashes: PHashIndex | Iterable[int], max_hamming: int) -> bool:
    """Whether any of `hashes` is at Hamming distance <= `max_hamming` from `h`."""
    if isinstance(hashes, PHashIndex):
        return hashes.has_within(h, max_hamming)
    return any(hamming(h, other) <= max_hamming for other in hashes)


def read_blocklist(path: str) -> list[int]:
    """Reads a file of hex pHashes, one per line (`#` starts a comment).

    Raises:
        InputError: the file is missing or a line is not a hex pHash.
    """
    if not path or not fs.exists(path):
        raise InputError(f"pHash blocklist {path!r} does not exist")
    hashes = []
    for number, line in enumerate(fs.read_text(path).splitlines(), start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            hashes.append(parse_phash_hex(text))
        except ValueError:
            raise InputError(f"{path}:{number}: {text!r} is not a 16-hex-digit pHash") from None
    return hashes


def write_blocklist(path: str, hashes: list[int]) -> None:
    """Writes hashes in the format `read_blocklist` reads."""
    fs.write_text(path, "".join(phash_hex(h) + "\n" for h in hashes))
