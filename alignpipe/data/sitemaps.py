"""Sitemaps (sitemaps.org protocol 0.9), read within a byte cap by a parser that expands nothing.

A crawl reads the sitemaps robots.txt names (`Sitemap:` lines; `/sitemap.xml` when there
are none), then the sitemaps their sitemap indexes list, breadth first, each URL once (an
index that lists itself or an earlier index is not read again), at most `MAX_SITEMAPS`
files per host. A file is:

- inflated, when gzipped (`.xml.gz`), in pieces of at most `INFLATE_CHUNK_BYTES`, and never
  past `scrape.max_page_bytes` (a small `.xml.gz` can inflate to gigabytes);
- parsed as a stream (SAX, through `defusedxml`): entity declarations and external
  references are refused, not expanded or fetched; CDATA sections and character references
  (`&amp;`) are read as XML says; `<urlset>` and `<sitemapindex>` in the sitemap namespace,
  in none, or in any other (the children must share the root's);
- cut at `MAX_SITEMAP_URLS` `<loc>`s, the protocol's limit; the rest are counted.

Each file read ends in one outcome, or in its fetch's (`http_404`, `timeout`, ...:
`alignpipe.data.fetch`); the URLs read before a fault are kept:

| outcome             | meaning                                                           |
|---------------------|-------------------------------------------------------------------|
| `ok`                | read whole                                                        |
| `too_large`         | over `scrape.max_page_bytes` as sent (unread), or inflated (read to it) |
| `malformed_sitemap` | not well-formed XML, a refused entity or reference, a broken gzip stream |
| `not_a_sitemap`     | well-formed XML whose root is neither `<urlset>` nor `<sitemapindex>` |
| `max_sitemaps`      | listed after `MAX_SITEMAPS` files of the host were read; not fetched |
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import urllib.parse
import xml.sax
import xml.sax.handler
import zlib
from collections.abc import Iterable, Iterator

import defusedxml
import defusedxml.sax

from alignpipe.data.fetch import Fetcher, HopCheck

log = logging.getLogger("alignpipe")
MAX_SITEMAPS = 100  # files read per host, indexes included
MAX_SITEMAP_URLS = 50_000  # <loc>s per file (sitemaps.org: "no more than 50,000 URLs")
INFLATE_CHUNK_BYTES = 1 << 16
GZIP_MAGIC = b"\x1f\x8b"


@dataclasses.dataclass(frozen=True)
class Sitemap:
    """One sitemap file, as read.

    Attributes:
        url: the sitemap's URL.
        outcome: see the module docstring.
        kind: `urlset` (page URLs) or `sitemapindex` (sitemap URLs); "" when no root was read.
        locs: the `<loc>` URLs in document order, at most `MAX_SITEMAP_URLS`, as written.
        dropped: `<loc>`s past `MAX_SITEMAP_URLS`, counted and not kept.
        error: a one-line reason when not `ok`.
    """

    url: str
    outcome: str
    kind: str = ""
    locs: tuple[str, ...] = ()
    dropped: int = 0
    error: str = ""


@dataclasses.dataclass(frozen=True)
class SitemapsRead:
    """What a host's sitemaps gave.

    Attributes:
        page_urls: the page URLs of its `<urlset>`s, each once, fragments removed.
        outcomes: sitemap files by outcome (`max_sitemaps`: listed but not read).
        dropped: `<loc>`s past `MAX_SITEMAP_URLS` in any file.
    """

    page_urls: list[str]
    outcomes: collections.Counter[str]
    dropped: int = 0


class InflatedTooLarge(Exception):
    """A gzip stream inflates to more than the cap."""


class _NotASitemap(Exception):
    """A root element other than `<urlset>` / `<sitemapindex>`."""


def inflate(body: bytes, max_bytes: int, chunk_bytes: int = INFLATE_CHUNK_BYTES) -> Iterator[bytes]:
    """A gzip stream (one member or several) inflated in pieces, at most `max_bytes` in all.

    The input is handed over `chunk_bytes` at a time too, so nothing but the pieces and the
    inflater's window is allocated, whatever the compression ratio.

    Args:
        body: the gzip bytes.
        max_bytes: the most inflated bytes yielded.
        chunk_bytes: the most bytes taken in, and given out, by one step.

    Yields:
        Pieces of at most `chunk_bytes` bytes.

    Raises:
        InflatedTooLarge: there is more than `max_bytes` (raised once `max_bytes` were yielded).
        zlib.error: not gzip, corrupt, or cut short.
    """
    view, left = memoryview(body), max_bytes
    inflater, data, fed = zlib.decompressobj(zlib.MAX_WBITS | 16), b"", 0
    while True:
        if not data and fed < len(body):
            data, fed = view[fed : fed + chunk_bytes], min(len(body), fed + chunk_bytes)
        # One byte over what is left is asked for, to tell "exactly the cap" from "more".
        piece = inflater.decompress(data, min(chunk_bytes, left + 1))
        data = inflater.unconsumed_tail
        if len(piece) > left:
            if left:
                yield piece[:left]
            raise InflatedTooLarge
        left -= len(piece)
        if piece:
            yield piece
        if inflater.eof:
            start = fed - len(inflater.unused_data)  # where a next member would begin
            if not body.startswith(GZIP_MAGIC, start):
                return  # trailing bytes after the last member are ignored, as gzip(1) does
            inflater, data, fed = zlib.decompressobj(zlib.MAX_WBITS | 16), b"", start
        elif not piece and not data and fed == len(body):
            raise zlib.error("the gzip stream ends early")


class _SitemapHandler(xml.sax.handler.ContentHandler):
    """SAX events -> the root's kind and the `<loc>` texts of its entries."""

    CHILD = {"urlset": "url", "sitemapindex": "sitemap"}

    def __init__(self, max_urls: int) -> None:
        super().__init__()
        self.max_urls = max_urls
        self.kind, self.namespace = "", ""
        self.locs: list[str] = []
        self.dropped = 0
        self._path: list[tuple[str | None, str]] = []
        self._text: list[str] | None = None

    def startElementNS(self, name: tuple[str | None, str], qname: str | None, attrs: object) -> None:
        namespace, local = name
        if not self._path:
            if local not in self.CHILD:
                raise _NotASitemap(f"the root element is <{qname or local}>, not <urlset> or <sitemapindex>")
            self.kind, self.namespace = local, namespace
        elif self._is_loc(name):
            self._text = []
        self._path.append(name)

    def _is_loc(self, name: tuple[str | None, str]) -> bool:
        # Only root/entry/loc in the root's namespace: an image sitemap's <image:loc> is no page.
        entry = (self.namespace, self.CHILD[self.kind])
        return len(self._path) == 2 and self._path[1] == entry and name == (self.namespace, "loc")

    def characters(self, content: str) -> None:
        if self._text is not None:
            self._text.append(content)

    def endElementNS(self, name: tuple[str | None, str], qname: str | None) -> None:
        self._path.pop()
        if self._text is None:
            return
        loc, self._text = "".join(self._text).strip(), None
        if not loc:
            return
        if len(self.locs) < self.max_urls:
            self.locs.append(loc)
        else:
            self.dropped += 1


def parse_sitemap(url: str, body: bytes, max_bytes: int, max_urls: int = MAX_SITEMAP_URLS) -> Sitemap:
    """Reads a sitemap file's root and `<loc>`s (gzipped or not), never past `max_bytes` inflated.

    Args:
        url: the sitemap's URL (for `Sitemap.url` only).
        body: the file as fetched.
        max_bytes: the most bytes a gzipped body is inflated to.
        max_urls: the most `<loc>`s kept.

    Returns:
        The `Sitemap`; a fault in the file is its outcome, never an exception.
    """
    handler = _SitemapHandler(max_urls)
    parser = defusedxml.sax.make_parser()  # entities and external references refused
    parser.setFeature(xml.sax.handler.feature_namespaces, True)
    parser.setContentHandler(handler)
    pieces: Iterable[bytes] = inflate(body, max_bytes) if body.startswith(GZIP_MAGIC) else (body,)
    outcome, error = "ok", ""
    try:
        for piece in pieces:
            parser.feed(piece)
        parser.close()
    except InflatedTooLarge:
        outcome, error = (
            "too_large",
            f"inflates to more than {max_bytes} bytes; the first {max_bytes} were read",
        )
    except _NotASitemap as e:
        outcome, error = "not_a_sitemap", str(e)
    except (xml.sax.SAXParseException, defusedxml.DefusedXmlException, zlib.error) as e:
        outcome, error = "malformed_sitemap", _fault(e)
    return Sitemap(url, outcome, handler.kind, tuple(handler.locs), handler.dropped, error)


def _fault(e: Exception) -> str:
    if isinstance(e, xml.sax.SAXParseException):
        return f"not well-formed XML at line {e.getLineNumber()}: {e.getMessage()}"
    if isinstance(e, defusedxml.EntitiesForbidden):
        return f"declares entity {e.name!r} (entities are refused, not expanded)"
    if isinstance(e, defusedxml.ExternalReferenceForbidden):
        return f"refers to external {e.sysid!r} (external references are refused, not fetched)"
    return f"broken gzip stream: {e}"


async def read_sitemaps(
    fetcher: Fetcher, urls: Iterable[str], max_bytes: int, check: HopCheck | None = None
) -> SitemapsRead:
    """Reads sitemaps breadth first: `urls`, then what their indexes list, each URL once.

    Args:
        fetcher: the open `Fetcher`.
        urls: the first sitemaps (robots.txt's `Sitemap:` lines, or a guess).
        max_bytes: the cap on a sitemap file, as sent and once inflated.
        check: the hop check of each request (robots.txt).

    Returns:
        The page URLs, and the files by outcome; each file not `ok` is logged on one line.
    """
    queue = collections.deque(dict.fromkeys(urllib.parse.urldefrag(u).url for u in urls))
    listed = set(queue)
    pages: dict[str, None] = {}
    outcomes: collections.Counter[str] = collections.Counter()
    dropped = read = 0
    while queue and read < MAX_SITEMAPS:
        url = queue.popleft()
        read += 1
        fetched = await fetcher.get(url, max_bytes, check=check)
        if fetched.outcome == "ok":
            sitemap = parse_sitemap(url, fetched.body, max_bytes)
        else:
            sitemap = Sitemap(url, fetched.outcome, error=fetched.error)
        outcomes[sitemap.outcome] += 1
        dropped += sitemap.dropped
        _log(sitemap)
        for loc in sitemap.locs:
            target = urllib.parse.urldefrag(urllib.parse.urljoin(fetched.final_url, loc)).url
            if sitemap.kind == "urlset":
                pages.setdefault(target)
            elif target not in listed:
                listed.add(target)
                queue.append(target)
    if queue:
        outcomes["max_sitemaps"] += len(queue)
        log.warning(
            "%d sitemaps not read, over the limit of %d per host: %s, ...", len(queue), MAX_SITEMAPS, queue[0]
        )
    return SitemapsRead(list(pages), outcomes, dropped)


def _log(sitemap: Sitemap) -> None:
    if sitemap.dropped:
        log.warning(
            "sitemap %s: %d URLs past the protocol's limit of %d not kept",
            sitemap.url,
            sitemap.dropped,
            MAX_SITEMAP_URLS,
        )
    if sitemap.outcome == "http_404":  # no sitemap there: the usual answer to the /sitemap.xml guess
        log.info("sitemap %s: http_404", sitemap.url)
    elif sitemap.outcome != "ok":
        log.warning(
            "sitemap %s: %s, %s; URLs kept: %d",
            sitemap.url,
            sitemap.outcome,
            sitemap.error,
            len(sitemap.locs),
        )
