"""The HTTP engine of the scrape: many requests in flight, polite to each host, safe by default.

One `Fetcher` (an aiohttp session) serves a whole crawl or download unit:

- connections are reused, at most `per_host_connections` per host and `max_connections`
  in all; requests to one host start at least `min_host_delay_s` apart (robots.txt's
  `Crawl-delay` raises that per host, `set_host_delay`);
- redirects are followed by hand, and every hop is checked again: its form
  (`addresses.url_problem`), the caller's check (robots.txt, allowed hosts) and the
  address the host resolves to
  (`alignpipe.data.addresses`: private, loopback, link-local and metadata addresses are
  refused unless configured);
- each try has a total deadline, body included (a slow-drip body cannot hold a worker),
  and a cap on the (decompressed) body size;
- 429, 5xx, timeouts and failed connections are retried with exponential backoff; a
  `Retry-After` wins when longer, and one over `max_retry_after_s` ends the retries. A
  malformed URL (`url_malformed`: a port out of range, a broken IPv6 literal, ...) cannot
  succeed on a retry and is not retried; no request is sent for it.

A request may carry an earlier answer's validators (`Validators`: ETag, Last-Modified); a
`304 Not Modified` to it ends as `not_modified`, its body unread.

Every request ends in exactly one outcome: `ok`, `not_modified`, `http_<status>`, `not_http`,
`url_malformed`, `not_html` (when only HTML is wanted), `too_large`, `too_many_redirects`,
`forbidden_address`, `timeout`, `unreachable`, or whatever the caller's hop check refuses a
URL with.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import time
import urllib.parse
from collections.abc import Awaitable, Callable

import aiohttp
import yarl

from alignpipe.config import ScrapeConfig
from alignpipe.data.addresses import (
    ForbiddenAddress,
    GuardedResolver,
    Network,
    check_literal,
    parse_networks,
    url_problem,
)
from alignpipe.data.html import resolve_or_keep

HTML_TYPES = ("text/html", "application/xhtml+xml")
REDIRECTS = (301, 302, 303, 307, 308)
RETRY_STATUSES = (429, 500, 502, 503, 504)
RETRY_OUTCOMES = frozenset({f"http_{s}" for s in RETRY_STATUSES} | {"timeout", "unreachable"})

HopCheck = Callable[[str], Awaitable[str | None]]  # a URL -> the outcome refusing it, or None


@dataclasses.dataclass(frozen=True)
class FetchPolicy:
    """Limits and manners of a `Fetcher` (see `ScrapeConfig` for each field's meaning)."""

    user_agent: str
    per_host_connections: int = 16
    min_host_delay_s: float = 0.0
    max_connections: int = 256
    allowed_networks: tuple[Network, ...] = ()
    max_redirects: int = 5
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 10.0
    deadline_s: float = 60.0
    retries: int = 3
    retry_backoff_s: float = 1.0
    max_retry_after_s: float = 120.0

    @classmethod
    def from_config(cls, cfg: ScrapeConfig) -> FetchPolicy:
        return cls(
            user_agent=cfg.user_agent,
            per_host_connections=cfg.per_host_connections,
            min_host_delay_s=cfg.min_host_delay_s,
            max_connections=cfg.max_connections,
            allowed_networks=parse_networks(cfg.allowed_networks),
            max_redirects=cfg.max_redirects,
            connect_timeout_s=cfg.connect_timeout_s,
            read_timeout_s=cfg.read_timeout_s,
            deadline_s=cfg.request_deadline_s,
            retries=cfg.retries,
            retry_backoff_s=cfg.retry_backoff_s,
            max_retry_after_s=cfg.max_retry_after_s,
        )


@dataclasses.dataclass(frozen=True)
class Validators:
    """An earlier answer's validators, sent as `If-None-Match` / `If-Modified-Since`.

    Attributes:
        url: the URL that gave them; they are sent on the hop to this URL only (another
            URL's answer cannot be compared with them).
        etag: the `ETag` header ("" when none).
        last_modified: the `Last-Modified` header ("" when none).
    """

    url: str
    etag: str = ""
    last_modified: str = ""

    def headers(self) -> dict[str, str]:
        headers = {"If-None-Match": self.etag} if self.etag else {}
        return headers | ({"If-Modified-Since": self.last_modified} if self.last_modified else {})


@dataclasses.dataclass(frozen=True)
class Fetched:
    """The result of `Fetcher.get`.

    Attributes:
        url: the URL requested.
        final_url: the URL answered after redirects (resolve a page's links against it).
        outcome: see the module docstring.
        status: the last HTTP status, when a response arrived.
        content_type: media type without parameters, lower case.
        charset: the `charset` parameter of the Content-Type header ("" when absent).
        body: the body (empty unless `ok`).
        robots_tags: lower-case `X-Robots-Tag` directives that apply to this user agent.
        error: a one-line reason when not `ok`.
        tries: requests made, retries included.
        etag: the answer's `ETag` header ("" when none).
        last_modified: the answer's `Last-Modified` header ("" when none).
    """

    url: str
    final_url: str
    outcome: str
    status: int | None = None
    content_type: str = ""
    charset: str = ""
    body: bytes = b""
    robots_tags: frozenset[str] = frozenset()
    error: str = ""
    tries: int = 1
    etag: str = ""
    last_modified: str = ""


class _HostGate:
    """At most N requests in flight to one host, starting at least `delay_s` apart."""

    def __init__(self, connections: int, delay_s: float) -> None:
        self._slots = asyncio.Semaphore(connections)
        self.delay_s = delay_s
        self._next_start = 0.0

    async def __aenter__(self) -> None:
        await self._slots.acquire()
        if self.delay_s > 0:
            now = time.monotonic()
            start = max(now, self._next_start)
            self._next_start = start + self.delay_s
            await asyncio.sleep(start - now)

    async def __aexit__(self, *exc: object) -> None:
        self._slots.release()


class Fetcher:
    """An async HTTP client for crawling and downloading (see the module docstring).

    Example:
        >>> async def main(policy):
        ...     async with Fetcher(policy) as fetcher:
        ...         return await fetcher.get("http://127.0.0.1:8000/a.png", max_bytes=10**6)
    """

    def __init__(self, policy: FetchPolicy) -> None:
        self.policy = policy
        self._gates: dict[str, _HostGate] = {}
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Fetcher:
        p = self.policy
        connector = aiohttp.TCPConnector(
            limit=p.max_connections,
            limit_per_host=p.per_host_connections,
            resolver=GuardedResolver(p.allowed_networks),
            ttl_dns_cache=300,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers={"User-Agent": p.user_agent, "Accept": "*/*"},
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(sock_connect=p.connect_timeout_s, sock_read=p.read_timeout_s),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    def set_host_delay(self, host: str, delay_s: float) -> None:
        """Raises the minimum gap between two requests to `host` (e.g. robots.txt's Crawl-delay)."""
        gate = self._gate(host)
        gate.delay_s = max(gate.delay_s, delay_s)

    def _gate(self, host: str) -> _HostGate:
        if host not in self._gates:
            p = self.policy
            self._gates[host] = _HostGate(p.per_host_connections, p.min_host_delay_s)
        return self._gates[host]

    async def get(
        self,
        url: str,
        max_bytes: int,
        check: HopCheck | None = None,
        html_only: bool = False,
        validators: Validators | None = None,
    ) -> Fetched:
        """GETs `url` with retries; never raises for network, HTTP or content errors.

        Args:
            url: an absolute URL.
            max_bytes: bodies longer than this (after decompression) end as `too_large`.
            check: called on the URL and on every redirect target; a returned outcome
                stops the request there (e.g. `robots_disallowed`).
            html_only: a response that is not HTML ends as `not_html`, its body unread.
            validators: an earlier answer's; a 304 to them ends as `not_modified`.
        """
        p = self.policy
        for attempt in range(p.retries + 1):
            fetched, retry_after = await self._try(url, max_bytes, check, html_only, validators)
            fetched = dataclasses.replace(fetched, tries=attempt + 1)
            if fetched.outcome not in RETRY_OUTCOMES or attempt == p.retries:
                return fetched
            if retry_after is not None and retry_after > p.max_retry_after_s:
                return dataclasses.replace(
                    fetched, error=f"{fetched.error}; Retry-After {retry_after:.0f} s is too long"
                )
            await asyncio.sleep(max(p.retry_backoff_s * 2**attempt, retry_after or 0.0))
        raise AssertionError("unreachable")

    async def _try(
        self, url: str, max_bytes: int, check: HopCheck | None, html_only: bool, validators: Validators | None
    ) -> tuple[Fetched, float | None]:
        try:
            async with asyncio.timeout(self.policy.deadline_s):
                return await self._follow(url, max_bytes, check, html_only, validators)
        except TimeoutError:
            return Fetched(url, url, "timeout", error=f"no answer within {self.policy.deadline_s:g} s"), None
        except ForbiddenAddress as e:
            return Fetched(url, url, "forbidden_address", error=str(e)), None
        except ValueError as e:  # yarl and aiohttp (InvalidURL) refusing the URL: final
            return Fetched(url, url, "url_malformed", error=_one_line(e)), None
        except aiohttp.ClientConnectorError as e:
            if isinstance(e.os_error, ForbiddenAddress):
                return Fetched(url, url, "forbidden_address", error=str(e.os_error)), None
            return Fetched(url, url, "unreachable", error=_one_line(e)), None
        except (aiohttp.ClientError, OSError) as e:
            return Fetched(url, url, "unreachable", error=_one_line(e)), None

    async def _follow(
        self, url: str, max_bytes: int, check: HopCheck | None, html_only: bool, validators: Validators | None
    ) -> tuple[Fetched, float | None]:
        assert self._session is not None, "use Fetcher as an async context manager"
        hops = [url]
        while True:
            current = hops[-1]
            problem = url_problem(current)
            if problem is not None:
                error = problem.reason if len(hops) == 1 else f"redirect from {hops[-2]}: {problem.reason}"
                return Fetched(url, current, problem.outcome, error=error), None
            parts = urllib.parse.urlsplit(current)
            check_literal(parts.hostname, self.policy.allowed_networks)
            refused = await check(current) if check else None
            if refused:
                return Fetched(url, current, refused, error=f"refused {current}"), None
            conditional = validators.headers() if validators and validators.url == current else {}
            async with self._gate(parts.netloc.lower()):
                request = self._session.get(_yarl(current), allow_redirects=False, headers=conditional)
                async with request as response:
                    location = response.headers.get("Location")
                    if response.status in REDIRECTS and location:
                        # normalised as a page's links are; a malformed one is kept to be named
                        target = resolve_or_keep(current, location.partition("#")[0])
                        if target in hops or len(hops) > self.policy.max_redirects:
                            error = f"{len(hops)} hops, ending {current} -> {target}"
                            return Fetched(
                                url, current, "too_many_redirects", response.status, error=error
                            ), None
                        hops.append(target)
                        continue
                    return await self._read(url, current, response, max_bytes, html_only, bool(conditional))

    async def _read(
        self,
        url: str,
        final_url: str,
        response: aiohttp.ClientResponse,
        max_bytes: int,
        html_only: bool,
        conditional: bool,
    ) -> tuple[Fetched, float | None]:
        status, content_type = response.status, response.content_type.lower()
        charset = response.charset or ""
        headers = response.headers
        tags = robots_tags(headers.getall("X-Robots-Tag", []), self.policy.user_agent)
        common = dict(status=status, content_type=content_type, charset=charset, robots_tags=tags)
        common |= dict(etag=headers.get("ETag", ""), last_modified=headers.get("Last-Modified", ""))
        if status == 304 and conditional:
            return Fetched(url, final_url, "not_modified", **common), None
        if not 200 <= status < 300:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            error = f"HTTP {status} {response.reason or ''}".strip()
            return Fetched(url, final_url, f"http_{status}", error=error, **common), retry_after
        if html_only and content_type not in HTML_TYPES:
            return Fetched(
                url, final_url, "not_html", error=content_type or "no content type", **common
            ), None
        length = response.content_length
        if length is not None and length > max_bytes:
            error = f"Content-Length {length} > {max_bytes} bytes"
            return Fetched(url, final_url, "too_large", error=error, **common), None
        chunks, size = [], 0
        async for chunk in response.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > max_bytes:
                error = f"body longer than {max_bytes} bytes"
                return Fetched(url, final_url, "too_large", error=error, **common), None
            chunks.append(chunk)
        return Fetched(url, final_url, "ok", body=b"".join(chunks), **common), None


def robots_tags(values: list[str], user_agent: str) -> frozenset[str]:
    """The `X-Robots-Tag` directives for this user agent (`noai`, `noimageai`, `noindex`, ...).

    A value may name a user agent (`googlebot: noindex`); those for other agents are ignored.
    """
    token = user_agent.split("/", 1)[0].strip().lower()
    out: set[str] = set()
    for value in values:
        agent, sep, rest = value.partition(":")
        if sep and " " not in agent.strip() and "," not in agent:
            if agent.strip().lower() not in (token, "*"):
                continue
            value = rest
        out.update(d.strip().lower() for d in value.replace(";", ",").split(",") if d.strip())
    return frozenset(out)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _yarl(url: str) -> yarl.URL:
    # URLs from `alignpipe.data.html` are already percent-encoded: send them as they are.
    return yarl.URL(url, encoded=url.isascii())


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or "connection failed"
    return f"{type(e).__name__}: {text}"[:300]
