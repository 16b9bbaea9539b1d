"""robots.txt rules of one host (RFC 9309), as the crawler and the downloader obey them.

Fetching `/robots.txt`: a 2xx answer is parsed; a 4xx answer (no robots.txt) allows
everything; a 5xx answer or an unreachable host disallows everything, as RFC 9309
section 2.3.1 asks. `Crawl-delay` (whole seconds, as `urllib.robotparser` reads it) or
`Request-rate` for our user agent sets the pause between two requests to the host.
"""

from __future__ import annotations

import dataclasses
import urllib.parse
import urllib.robotparser

from alignpipe.data.download import fetch

ROBOTS_MAX_BYTES = 500_000  # RFC 9309: parse at least the first 500 KiB


@dataclasses.dataclass
class RobotsRules:
    """What a host allows our user agent to fetch.

    Attributes:
        user_agent: the crawler's user agent string.
        parser: parsed rules; None means every path is allowed.
        disallow_all: the rules could not be read (5xx, unreachable).
        reason: why, when `disallow_all`.
    """

    user_agent: str
    parser: urllib.robotparser.RobotFileParser | None = None
    disallow_all: bool = False
    reason: str = ""

    def can_fetch(self, url: str) -> bool:
        if self.disallow_all:
            return False
        return self.parser is None or self.parser.can_fetch(self.user_agent, url)

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


def robots_url(url: str) -> str:
    """`scheme://host[:port]/robots.txt` of any URL on that host."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/robots.txt"


def parse_robots(text: str, user_agent: str) -> RobotsRules:
    """Rules from the text of a robots.txt."""
    parser = urllib.robotparser.RobotFileParser()
    parser.parse(text.splitlines())
    return RobotsRules(user_agent, parser)


def load_robots(url: str, user_agent: str, timeout_s: float) -> RobotsRules:
    """Fetches and parses the robots.txt of `url`'s host."""
    fetched = fetch(robots_url(url), user_agent, timeout_s, ROBOTS_MAX_BYTES)
    if fetched.outcome == "ok":
        return parse_robots(fetched.body.decode("utf-8", errors="replace"), user_agent)
    if fetched.status is not None and 400 <= fetched.status < 500:
        return RobotsRules(user_agent)
    return RobotsRules(user_agent, disallow_all=True, reason=fetched.error or fetched.outcome)
