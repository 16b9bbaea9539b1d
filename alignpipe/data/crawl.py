"""A polite, bounded breadth-first crawl of one host.

`crawl_host` starts from the host's seed URLs, follows `<a href>` links on the same
host, obeys robots.txt (and its `Crawl-delay`), and stops at `max_pages` fetched
pages or `max_depth` links from a seed. Every page URL it meets gets exactly one
`CrawlEvent` with one outcome:

| outcome              | meaning                                                      |
|----------------------|--------------------------------------------------------------|
| `ok`                 | fetched HTML; its `<img>`s are scraped                       |
| `http_<status>`      | the server answered an error (`http_404`, `http_500`, ...)   |
| `unreachable`        | DNS failure, refused connection, timeout                     |
| `too_large`          | longer than `scrape.max_page_bytes`                          |
| `not_html`           | fetched, but not `text/html` / `application/xhtml+xml`       |
| `robots_disallowed`  | robots.txt forbids it; not fetched                           |
| `robots_unavailable` | robots.txt answered 5xx or could not be fetched; not fetched |
| `off_host`           | a link to a host outside `scrape.allowed_hosts`; not fetched |
| `other_host`         | a link to another allowed host; crawled from that host's     |
|                      | own seed URLs only                                           |
| `max_depth`          | more links away from a seed than `scrape.max_depth`          |
| `max_pages`          | found after `scrape.max_pages` pages were fetched            |
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import time
import urllib.parse
from collections.abc import Iterable, Iterator

from alignpipe.config import Config, ScrapeConfig
from alignpipe.data.download import fetch
from alignpipe.data.html import extract_links
from alignpipe.data.robots import RobotsRules, load_robots
from alignpipe.errors import InputError
from alignpipe.progress import Progress

log = logging.getLogger("alignpipe")
HTML_TYPES = ("text/html", "application/xhtml+xml")


@dataclasses.dataclass(frozen=True)
class CrawlEvent:
    """The outcome for one page URL.

    Attributes:
        url: the page URL as linked (fragment removed).
        referrer: the page that linked it; "" for a seed URL.
        depth: links from the nearest seed (0 for seeds).
        outcome: see the module docstring.
        final_url: the URL after redirects, against which the page's URLs resolve.
        html: the page's text when `outcome == "ok"`.
        error: a one-line reason for failures.
    """

    url: str
    referrer: str
    depth: int
    outcome: str
    final_url: str = ""
    html: str = ""
    error: str = ""


def host_of(url: str) -> str:
    """The `host[:port]` of a URL, lower case ("" for URLs without one, e.g. `data:`)."""
    return urllib.parse.urlsplit(url).netloc.lower()


def allowed_hosts(cfg: ScrapeConfig) -> frozenset[str]:
    """`scrape.allowed_hosts`, or the hosts of the seed URLs when it is empty."""
    hosts = cfg.allowed_hosts or tuple(host_of(u) for u in cfg.seed_urls)
    return frozenset(h.lower() for h in hosts)


def is_allowed_host(url: str, allowed: frozenset[str]) -> bool:
    """True when the URL's `host:port`, or its host name alone, is allowed."""
    parts = urllib.parse.urlsplit(url)
    return parts.scheme in ("http", "https") and (
        parts.netloc.lower() in allowed or (parts.hostname or "") in allowed
    )


def crawl_host(host: str, seeds: Iterable[str], cfg: ScrapeConfig) -> Iterator[CrawlEvent]:
    """Crawls one host breadth-first from its seed URLs.

    Args:
        host: the `host[:port]` every seed is on.
        seeds: absolute http(s) URLs on `host`.
        cfg: limits, user agent, timeouts and allowed hosts.

    Yields:
        One `CrawlEvent` per distinct page URL met, in crawl order.
    """
    allowed = allowed_hosts(cfg)
    queue = collections.deque((urllib.parse.urldefrag(s).url, "", 0) for s in dict.fromkeys(seeds))
    seen = {url for url, _, _ in queue}
    rules: RobotsRules | None = None
    fetched, last_request = 0, 0.0
    progress = Progress(total=None, desc=f"crawl {host}", unit="page")
    while queue:
        url, referrer, depth = queue.popleft()
        if not is_allowed_host(url, allowed):
            yield CrawlEvent(url, referrer, depth, "off_host")
            continue
        if rules is None:
            rules = load_robots(url, cfg.user_agent, cfg.request_timeout_s)
        if not rules.can_fetch(url):
            outcome = "robots_unavailable" if rules.disallow_all else "robots_disallowed"
            yield CrawlEvent(url, referrer, depth, outcome, error=rules.reason)
            continue
        if fetched >= cfg.max_pages:
            yield CrawlEvent(url, referrer, depth, "max_pages")
            continue
        time.sleep(max(0.0, last_request + rules.crawl_delay_s - time.monotonic()))
        last_request = time.monotonic()
        page = fetch(url, cfg.user_agent, cfg.request_timeout_s, cfg.max_page_bytes)
        fetched += 1
        progress.update(1, queued=len(queue))
        if page.outcome != "ok":
            yield CrawlEvent(url, referrer, depth, page.outcome, page.final_url, error=page.error)
            continue
        if page.content_type not in HTML_TYPES:
            yield CrawlEvent(url, referrer, depth, "not_html", page.final_url, error=page.content_type)
            continue
        text = page.body.decode("utf-8", errors="replace")
        yield CrawlEvent(url, referrer, depth, "ok", page.final_url, text)
        for link in extract_links(text, page.final_url):
            if link in seen:
                continue
            seen.add(link)
            if host_of(link) != host:
                yield CrawlEvent(
                    link, url, depth + 1, "other_host" if is_allowed_host(link, allowed) else "off_host"
                )
            elif depth + 1 > cfg.max_depth:
                yield CrawlEvent(link, url, depth + 1, "max_depth")
            else:
                queue.append((link, url, depth + 1))
    progress.close()


def check_seeds_reachable(cfg: Config) -> None:
    """Fetches every seed URL once, before a run starts.

    Raises:
        InputError: `scrape.seed_urls` is empty, or a seed cannot be fetched (refused
            connection, DNS failure, timeout, HTTP error), naming the URL and the reason.
    """
    scrape = cfg.scrape
    if not scrape.seed_urls:
        raise InputError("scrape.seed_urls is empty: give at least one http(s) URL to start crawling from")
    for url in scrape.seed_urls:
        page = fetch(url, scrape.user_agent, scrape.request_timeout_s, scrape.max_page_bytes)
        if page.outcome not in ("ok", "too_large"):
            raise InputError(f"seed URL {url} is unreachable: {page.error or page.outcome}")
