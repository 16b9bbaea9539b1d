"""What every source yields before download: pages met and the `<img>` entries they hold.

The crawl, the url lists and the Common Crawl readers all produce these, so the
download and the outputs are one path whatever the source.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class ImageEntry:
    """One (image URL, alt-text) use, before download.

    Attributes:
        url: absolute image URL (percent-encoded, IDN host in punycode).
        alt: whitespace-normalised alt-text or caption; "" when missing or empty.
        page_url: the page whose `<img>` gave it; "" for url lists.
        opted_out: the page opted out of AI use (`noai` / `noimageai` robots directives).
    """

    url: str
    alt: str
    page_url: str = ""
    opted_out: bool = False


@dataclasses.dataclass(frozen=True)
class PageRecord:
    """The outcome for one page URL (crawled, or read from a WARC / WAT file).

    Attributes:
        url: the page URL as linked or recorded (fragment removed).
        outcome: `ok` or a named failure (see `alignpipe.data.scrape`).
        referrer: the page that linked it; "" for seeds and archive records.
        depth: links from the nearest seed (0 for seeds and archive records).
        error: a one-line reason for failures.
        images: the page's `<img>` entries when `outcome == "ok"`.
    """

    url: str
    outcome: str
    referrer: str = ""
    depth: int = 0
    error: str = ""
    images: tuple[ImageEntry, ...] = ()
