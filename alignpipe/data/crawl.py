"""A polite, bounded, concurrent breadth-first crawl of one site.

`crawl_site_batches` starts from a host's seed URLs (and its sitemaps), follows `<a href>` links
on that host, obeys robots.txt (rules and `Crawl-delay`, through `RobotsCache`) and
`<meta name=robots content=nofollow>`, and stops at `max_pages` fetched pages or
`max_depth` links from a seed. Each page is parsed once (`alignpipe.data.html`). Every
page URL met gets exactly one `PageRecord` with one outcome:

| outcome              | meaning                                                        |
|----------------------|----------------------------------------------------------------|
| `ok`                 | fetched HTML; its `<img>`s are in `PageRecord.images`          |
| `http_<status>`      | the server answered an error (`http_404`, `http_500`, ...)     |
| `unreachable`        | DNS failure, refused or broken connection (after retries)      |
| `timeout`            | no complete answer within `scrape.request_deadline_s`          |
| `too_large`          | longer than `scrape.max_page_bytes`                            |
| `not_html`           | fetched, but not `text/html` / `application/xhtml+xml`         |
| `too_many_redirects` | a redirect loop, or more hops than `scrape.max_redirects`      |
| `forbidden_address`  | the host resolves to a refused address (`addresses`)           |
| `not_http`           | a redirect (or sitemap entry) to a non-http(s) URL             |
| `url_malformed`      | a link, sitemap entry or redirect that cannot be requested     |
|                      | (`addresses.url_problem`: a bad port, a broken IPv6 literal,   |
|                      | ...); no request is sent                                       |
| `robots_disallowed`  | robots.txt forbids it; not fetched                             |
| `robots_unavailable` | robots.txt answered 429 / 5xx or failed after retries          |
| `off_host`           | a link outside `scrape.allowed_hosts`; not fetched             |
| `other_host`         | a link to another allowed host; crawled from its own seeds     |
| `non_page_link`      | a link to an image, archive or document (by extension)         |
| `max_depth`          | more links away from a seed than `scrape.max_depth`            |
| `max_pages`          | found after `scrape.max_pages` pages of the host were fetched  |

Images of pages that opt out of AI use (`noai` / `noimageai` in `<meta name=robots>` or
in an `X-Robots-Tag` header) are marked `opted_out`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import urllib.parse
from collections.abc import AsyncIterator, Iterable, Iterator

from alignpipe.config import ScrapeConfig
from alignpipe.data.addresses import url_problem
from alignpipe.data.entries import ImageEntry, PageRecord
from alignpipe.data.fetch import Fetcher, FetchPolicy
from alignpipe.data.html import parse_page
from alignpipe.data.robots import RobotsCache
from alignpipe.data.sitemaps import read_sitemaps
from alignpipe.errors import InputError
from alignpipe.progress import Progress

log = logging.getLogger("alignpipe")
OPT_OUT = frozenset({"noai", "noimageai"})
NON_PAGE_EXTENSIONS = frozenset(
    ".png .jpg .jpeg .gif .webp .bmp .svg .ico .tif .tiff .pdf .zip .gz .tgz .bz2 .xz .tar .deb .rpm "
    ".exe .dmg .iso .mp3 .mp4 .avi .mov .webm .ogg .wav .css .js .json .xml .txt .csv .ps .eps".split()
)


def host_of(url: str) -> str:
    """The `host[:port]` of a URL, lower case ("" for URLs without one, e.g. `data:`)."""
    return urllib.parse.urlsplit(url).netloc.lower()


def allowed_hosts(cfg: ScrapeConfig) -> frozenset[str]:
    """`scrape.allowed_hosts`, or the hosts of the seed URLs when it is empty."""
    hosts = cfg.allowed_hosts or tuple(host_of(u) for u in cfg.seed_urls)
    return frozenset(h.lower() for h in hosts)


def is_allowed_host(url: str, allowed: frozenset[str]) -> bool:
    """True for an http(s) URL whose `host:port` or host is allowed; `*.example.com` allows
    example.com and every subdomain."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return False
    host = parts.hostname or ""
    if parts.netloc.lower() in allowed or host in allowed:
        return True
    return any(a.startswith("*.") and (host == a[2:] or host.endswith(a[1:])) for a in allowed)


def is_page_link(url: str) -> bool:
    """False when the path's extension names an image, archive or document."""
    path = urllib.parse.urlsplit(url).path.lower()
    dot = path.rfind(".")
    return dot <= path.rfind("/") or path[dot:] not in NON_PAGE_EXTENSIONS


class _SiteCrawl:
    """The state of one site's crawl: frontier, seen URLs, page budget."""

    def __init__(self, host: str, cfg: ScrapeConfig, fetcher: Fetcher, robots: RobotsCache) -> None:
        self.host, self.cfg, self.fetcher, self.robots = host, cfg, fetcher, robots
        self.allowed = allowed_hosts(cfg)
        self.queue: asyncio.Queue[tuple[str, str, int]] = asyncio.Queue()
        self.seen: set[str] = set()
        self.fetched = 0
        self.out: collections.deque[PageRecord] = collections.deque()
        self.progress = Progress(total=None, desc=f"crawl {host}", unit="page")

    def add(self, url: str, referrer: str, depth: int) -> None:
        """Queues a link, or records at once why it is not crawled."""
        if url in self.seen:
            return
        self.seen.add(url)
        problem = url_problem(url)
        if problem is not None:
            self.out.append(PageRecord(url, problem.outcome, referrer, depth, problem.reason))
        elif not is_allowed_host(url, self.allowed):
            self.out.append(PageRecord(url, "off_host", referrer, depth))
        elif host_of(url) != self.host:
            self.out.append(PageRecord(url, "other_host", referrer, depth))
        elif not is_page_link(url):
            self.out.append(PageRecord(url, "non_page_link", referrer, depth))
        elif depth > self.cfg.max_depth:
            self.out.append(PageRecord(url, "max_depth", referrer, depth))
        else:
            self.queue.put_nowait((url, referrer, depth))

    async def check(self, url: str) -> str | None:
        """Hop check of a page request: robots.txt of the URL's host."""
        return await self.robots.refusal(url)

    async def worker(self) -> None:
        while True:
            url, referrer, depth = await self.queue.get()
            try:
                await self.visit(url, referrer, depth)
            finally:
                self.queue.task_done()

    async def visit(self, url: str, referrer: str, depth: int) -> None:
        refusal = await self.robots.refusal(url)
        if refusal:
            reason = (await self.robots.rules(url)).reason
            self.out.append(PageRecord(url, refusal, referrer, depth, reason))
            return
        if self.fetched >= self.cfg.max_pages:
            self.out.append(PageRecord(url, "max_pages", referrer, depth))
            return
        self.fetched += 1
        page = await self.fetcher.get(url, self.cfg.max_page_bytes, check=self.check, html_only=True)
        self.progress.update(1, queued=self.queue.qsize())
        if page.outcome != "ok":
            self.out.append(PageRecord(url, page.outcome, referrer, depth, page.error))
            return
        content_type = f"{page.content_type}; charset={page.charset}" if page.charset else page.content_type
        parsed = parse_page(page.body, page.final_url, content_type)
        directives = parsed.robots | page.robots_tags
        opted_out = bool(directives & OPT_OUT)
        images = tuple(ImageEntry(i.image_url, i.alt, page.final_url, opted_out) for i in parsed.images)
        self.out.append(PageRecord(url, "ok", referrer, depth, images=images))
        if "nofollow" not in directives and "none" not in directives:
            for link in parsed.links:
                self.add(link, url, depth + 1)

    async def sitemap_urls(self, seeds: list[str]) -> list[str]:
        """Page URLs listed by the host's sitemaps (robots.txt `Sitemap:` lines, else /sitemap.xml),
        read as `alignpipe.data.sitemaps` does."""
        rules = await self.robots.rules(seeds[0])
        scheme = urllib.parse.urlsplit(seeds[0]).scheme
        first = rules.sitemaps or [f"{scheme}://{self.host}/sitemap.xml"]
        read = await read_sitemaps(self.fetcher, first, self.cfg.max_page_bytes, self.check)
        files = ", ".join(f"{n} {outcome}" for outcome, n in sorted(read.outcomes.items()))
        log.info("sitemaps of %s: %d page URLs; files by outcome: %s", self.host, len(read.page_urls), files)
        return read.page_urls


async def crawl_site_batches(
    host: str, seeds: Iterable[str], cfg: ScrapeConfig, fetcher: Fetcher
) -> AsyncIterator[PageRecord]:
    """Crawls one host breadth-first from its seed URLs (and sitemaps).

    Args:
        host: the `host[:port]` every seed is on.
        seeds: absolute http(s) URLs on `host`.
        cfg: limits, manners and allowed hosts.
        fetcher: the open `Fetcher` to request pages with.

    Yields:
        Lists of `PageRecord`s, one per distinct page URL met, as they come.
    """
    site = _SiteCrawl(host, cfg, fetcher, RobotsCache(fetcher, cfg.user_agent))
    seeds = [urllib.parse.urldefrag(s).url for s in dict.fromkeys(seeds)]
    for seed in seeds:
        site.add(seed, "", 0)
    if cfg.use_sitemaps and seeds:
        for url in await site.sitemap_urls(seeds):
            site.add(url, "sitemap", 0)
    workers = [asyncio.create_task(site.worker()) for _ in range(cfg.per_host_connections)]
    joined = asyncio.create_task(site.queue.join())
    try:
        while not joined.done() or site.out:
            if site.out:
                batch = list(site.out)
                site.out.clear()
                yield batch
            if not joined.done():
                await asyncio.wait([joined, *workers], timeout=0.05, return_when=asyncio.FIRST_COMPLETED)
            for w in workers:
                if w.done() and w.exception() is not None:
                    raise w.exception()
    finally:
        for w in workers:
            w.cancel()
        site.progress.close()


def crawl_host(host: str, seeds: Iterable[str], cfg: ScrapeConfig) -> Iterator[PageRecord]:
    """`crawl_site_batches` as a plain iterator, on an event loop of its own in this thread:
    the loop runs until the next batch of pages is ready, then pauses while they are
    consumed (the sockets keep receiving meanwhile)."""

    async def batches() -> AsyncIterator[list[PageRecord]]:
        async with Fetcher(FetchPolicy.from_config(cfg)) as fetcher:
            async for batch in crawl_site_batches(host, seeds, cfg, fetcher):
                yield batch

    loop = asyncio.new_event_loop()
    source = batches()
    try:
        while True:
            try:
                batch = loop.run_until_complete(anext(source))
            except StopAsyncIteration:
                return
            yield from batch
    finally:
        loop.run_until_complete(source.aclose())
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def check_seeds_reachable(cfg: ScrapeConfig) -> None:
    """Fetches every seed URL once, before a run starts.

    Raises:
        InputError: a seed cannot be fetched (refused connection, DNS failure, timeout,
            HTTP error, refused address), naming the URL and the reason.
    """

    async def fetch_all() -> list:
        async with Fetcher(FetchPolicy.from_config(cfg)) as fetcher:
            return [await fetcher.get(url, cfg.max_page_bytes) for url in cfg.seed_urls]

    for page in asyncio.run(fetch_all()):
        if page.outcome not in ("ok", "too_large"):
            hint = ""
            if page.outcome == "forbidden_address":
                hint = " (a site on this machine or a private network needs scrape.allowed_networks"
                hint += ", e.g. 127.0.0.1/32)"
            raise InputError(f"seed URL {page.url} is unreachable: {page.error or page.outcome}{hint}")
