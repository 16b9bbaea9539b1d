"""Pure HTML extraction: (image URL, alt-text) entries and the links of a page.

Uses the standard library's tolerant `html.parser`, so malformed real-world HTML
never raises. URLs are resolved against the page URL, or against the page's first
`<base href>` when it has one, as browsers do.

Example:
    >>> page = '<base href="/img/"><img src="a.png" alt=" A  red&amp;blue  circle ">'
    >>> extract_image_alts(page, "http://example.com/shop/p.html")
    [ImageAlt(image_url='http://example.com/img/a.png', alt='A red&blue circle')]
"""

from __future__ import annotations

import dataclasses
import html.parser
import urllib.parse

# Characters left as they are when re-quoting a URL (those of RFC 3986 plus '%').
_URL_SAFE = "!#$%&'()*+,/:;=?@[]~"


@dataclasses.dataclass(frozen=True)
class ImageAlt:
    """One `<img>` of a page.

    Attributes:
        image_url: absolute URL (lazy-loading `data-src` wins over `src`).
        alt: whitespace-normalised alt-text; "" when the alt is missing or empty.
    """

    image_url: str
    alt: str


class _PageParser(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)  # attribute values arrive unescaped
        self.base: str | None = None
        self.images: list[tuple[str, str]] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: (value or "") for name, value in attrs}
        if tag == "base" and self.base is None and values.get("href", "").strip():
            self.base = values["href"].strip()
        elif tag == "img":
            src = (values.get("data-src") or values.get("src") or "").strip()
            if src:
                self.images.append((src, values.get("alt", "")))
        elif tag in ("a", "area") and values.get("href", "").strip():
            self.links.append(values["href"].strip())

    handle_startendtag = handle_starttag


def _parse(page_html: str, page_url: str) -> tuple[_PageParser, str]:
    parser = _PageParser()
    parser.feed(page_html)
    parser.close()
    base = urllib.parse.urljoin(page_url, parser.base) if parser.base else page_url
    return parser, base


def resolve_url(base: str, ref: str) -> str:
    """`ref` made absolute against `base`, with unsafe characters (spaces, ...) percent-encoded."""
    return urllib.parse.quote(urllib.parse.urljoin(base, ref), safe=_URL_SAFE)


def normalise_alt(alt: str) -> str:
    """Collapses runs of whitespace to one space and strips the ends."""
    return " ".join(alt.split())


def extract_image_alts(page_html: str, page_url: str) -> list[ImageAlt]:
    """Every `<img>` with a source, in document order.

    Args:
        page_html: the page's HTML text.
        page_url: the absolute URL the page was fetched from.

    Returns:
        One `ImageAlt` per `<img>` that has a `src` or `data-src` (data: URLs included;
        the caller decides what to download).
    """
    parser, base = _parse(page_html, page_url)
    return [ImageAlt(resolve_url(base, src), normalise_alt(alt)) for src, alt in parser.images]


def extract_links(page_html: str, page_url: str) -> list[str]:
    """Absolute http(s) URLs of the page's `<a href>` / `<area href>`, fragments removed, first
    occurrence order, without repeats."""
    parser, base = _parse(page_html, page_url)
    links: dict[str, None] = {}
    for href in parser.links:
        url = urllib.parse.urldefrag(resolve_url(base, href)).url
        if urllib.parse.urlsplit(url).scheme in ("http", "https"):
            links.setdefault(url, None)
    return list(links)
