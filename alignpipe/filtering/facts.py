"""What the filter knows about one pair without its image bytes.

The corpus-wide statistics of the filter (alt-texts per image, images per alt-text, token
counts) are computed from these small records only; image bytes meet the decisions once, at
the end, when the kept pairs are copied out of their shards.

A metadata file (the filter's benchmark input, or an export) is parquet with one row per pair
and the columns of `PairMeta`; `phash` is null for an image that does not decode.
"""

from __future__ import annotations

from typing import NamedTuple


class PairMeta(NamedTuple):
    """One raw pair's metadata.

    Attributes:
        shard: the shard file the pair is in (any label for a metadata-only input).
        index: the pair's record index in that shard.
        sha256: hex SHA-256 of the image as downloaded.
        text: the alt-text as scraped.
        width: the image's width as downloaded, pixels (0 when undecodable).
        height: the image's height as downloaded, pixels (0 when undecodable).
        phash: 64-bit pHash of the image, or None when it does not decode.
        image_url: where the image came from.
        page_url: the page whose `<img alt>` gave the text.
        nsfw_score: the `filter.nsfw_image_scorer`'s score of the image (0 when none is set).
    """

    shard: str
    index: int
    sha256: str
    text: str
    width: int
    height: int
    phash: int | None
    image_url: str = ""
    page_url: str = ""
    nsfw_score: float = 0.0


METADATA_COLUMNS: tuple[str, ...] = PairMeta._fields
