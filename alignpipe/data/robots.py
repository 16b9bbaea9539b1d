"""robots.txt rules per host (RFC 9309), parsed with protego (wildcards `*` and `$` included).

Fetching `/robots.txt` goes through the `Fetcher`, so it is retried with backoff like any
request and its redirects are checked. Then: a 2xx answer is parsed; a 4xx answer (no
robots.txt) allows everything; a 429, a 5xx or an unreachable host after the retries
disallows everything (RFC 9309 section 2.3.1.3-4), counted as `robots_unavailable`; a
host resolving to a refused address is `forbidden_address`. `Crawl-delay` (or
`Request-rate`) for our user agent sets the host's minimum gap between two requests.
"""

from __future__ import annotations

import asyncio
import dataclasses
import urllib.parse

from protego import Protego

from alignpipe.data.fetch import Fetcher

ROBOTS_MAX_BYTES = 500 * 1024  # RFC 9309: parse at least the first 500 KiB


@dataclasses.dataclass(frozen=True)
class RobotsRules:
    """What a host allows our user agent to fetch.

    Attributes:
        user_agent: the crawler's user agent string.
        parser: parsed rules; None means every path is allowed.
        denied_outcome: when set, nothing may be fetched, and this outcome says why
            (`robots_unavailable` or `forbidden_address`).
        reason: a one-line reason for `denied_outcome`.
    """

    user_agent: str
    parser: Protego | None = None
    denied_outcome: str = ""
    reason: str = ""

    def refusal(self, url: str) -> str | None:
        """The outcome refusing `url` (`robots_disallowed`, ...), or None when allowed."""
        if self.denied_outcome:
            return self.denied_outcome
        if self.parser is not None and not self.parser.can_fetch(url, self.user_agent):
            return "robots_disallowed"
        return None

    @property
    def crawl_delay_s(self) -> float:
        """Seconds to wait between two requests to the host (0 when unspecified)."""
        if self.parser is None:
            return 0.0
        delay = self.parser.crawl_delay(self.user_agent)
        if delay is not None:
            return float(delay)
        rate = self.parser.request_rate(self.user_agent)
        return rate.seconds / rate.requests if rate and rate.requests else 0.0

    @property
    def sitemaps(self) -> list[str]:
        return list(self.parser.sitemaps) if self.parser is not None else []


def robots_url(url: str) -> str:
    """`scheme://host[:port]/robots.txt` of any URL on that host."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/robots.txt"


def parse_robots(text: str, user_agent: str) -> RobotsRules:
    """Rules from the text of a robots.txt."""
    return RobotsRules(user_agent, Protego.parse(text))


class RobotsCache:
    """robots.txt of every host met, fetched once per host (concurrent askers wait for it)."""

    def __init__(
        self, fetcher: Fetcher, user_agent: str, known: dict[str, RobotsRules] | None = None
    ) -> None:
        """`known`: rules loaded earlier (by robots.txt URL), shared and filled in; lets work
        units run one after another without fetching a host's robots.txt again."""
        self._fetcher = fetcher
        self._user_agent = user_agent
        self._known = {} if known is None else known
        self._loading: dict[str, asyncio.Task[RobotsRules]] = {}

    async def rules(self, url: str) -> RobotsRules:
        key = robots_url(url)
        rules = self._known.get(key)
        if rules is None:
            if key not in self._loading:
                self._loading[key] = asyncio.ensure_future(self._load(key))
            rules = self._known[key] = await self._loading[key]
        if rules.crawl_delay_s > 0:
            self._fetcher.set_host_delay(urllib.parse.urlsplit(url).netloc.lower(), rules.crawl_delay_s)
        return rules

    async def refusal(self, url: str) -> str | None:
        """A `HopCheck`: the outcome refusing `url`, or None."""
        return (await self.rules(url)).refusal(url)

    async def _load(self, url: str) -> RobotsRules:
        fetched = await self._fetcher.get(url, ROBOTS_MAX_BYTES)
        ua = self._user_agent
        if fetched.outcome == "ok":
            return parse_robots(fetched.body.decode("utf-8", errors="replace"), ua)
        if fetched.outcome == "forbidden_address":
            return RobotsRules(ua, denied_outcome="forbidden_address", reason=fetched.error)
        if fetched.status is not None and 400 <= fetched.status < 500 and fetched.status != 429:
            return RobotsRules(ua)
        reason = f"robots.txt: {fetched.error or fetched.outcome} after {fetched.tries} tries"
        return RobotsRules(ua, denied_outcome="robots_unavailable", reason=reason)
