"""Which URLs a scrape may request, and which network addresses it may connect to.

`url_problem` is the one check of a URL's form that every source goes through (url lists,
archived pages, crawled pages, redirect targets): a URL that cannot be requested ends as
`url_malformed` (or `not_http` for another scheme) instead of failing later, and is never
retried, since no retry can mend it.

A crawler that follows links and redirects from arbitrary pages can be pointed at the
machine it runs on, its private network or the cloud metadata server (169.254.169.254).
Only globally routable addresses are allowed, plus the networks a configuration names
explicitly (`scrape.allowed_networks`, e.g. `127.0.0.1/32` for a site served locally).
The check happens after DNS resolution, in the resolver the HTTP client connects with, so
a name cannot resolve to one address when checked and another when connected.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
import typing
import urllib.parse
from collections.abc import Iterable

import aiohttp
import idna
from aiohttp.abc import AbstractResolver, ResolveResult

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_LEGACY_IPV4 = re.compile(r"(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}", re.IGNORECASE)
# The request line of common servers is capped near 8 KiB (Apache's LimitRequestLine 8190,
# nginx's 8 KiB header buffers): a longer URL cannot be fetched.
MAX_URL_CHARS = 8192
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
# A host name as DNS carries it: labels of 1-63 letters, digits, '-' and '_' (both in use
# in real names, e.g. `blog-.tumblr.com`, `a_b.example`); a trailing dot is allowed.
_HOST_LABEL = re.compile(r"[a-z0-9_-]{1,63}")
_NUMERIC_LABEL = re.compile(r"0x[0-9a-f]*|[0-9]+")
_UNSAFE_CHAR = re.compile(r"[\x00-\x20\x7f\ud800-\udfff]")  # controls, space, lone surrogates


class UrlProblem(typing.NamedTuple):
    """Why a URL cannot be requested: the outcome it is counted under, and a one-line reason."""

    outcome: str  # `url_malformed` or `not_http`
    reason: str


class ForbiddenAddress(OSError):
    """A host resolved to an address outside the allowed networks."""


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def is_allowed_address(address: str, allowed: tuple[Network, ...]) -> bool:
    """True for a globally routable unicast address, or one inside `allowed`."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip.version == net.version and ip in net for net in allowed):
        return True
    return ip.is_global and not ip.is_multicast


def literal_address(host: str) -> str | None:
    """The address an IP-literal `host` names (brackets removed), else None. The legacy IPv4
    forms that resolvers accept (`2130706433`, `0x7f.1`, `0177.0.0.1`) count as literals."""
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        if _LEGACY_IPV4.fullmatch(host):
            with contextlib.suppress(OSError):
                return socket.inet_ntoa(socket.inet_aton(host))
        return None
    return host


def url_problem(url: str) -> UrlProblem | None:
    """Why `url` cannot be requested, or None when it is a well-formed http(s) URL.

    `url` is checked as it will be requested (as `html.resolve_url` normalises it: spaces
    and non-ASCII characters of the path already percent-encoded, the host in punycode).

    Outcomes:
        `not_http`: a well-formed URL of another scheme (`data:`, `ftp:`, `mailto:`, ...).
        `url_malformed`: everything else that cannot be requested: empty, no scheme, longer
        than `MAX_URL_CHARS`, a space, control character or lone surrogate anywhere, an
        unbalanced or invalid IPv6 literal, a port that is not a number in 1-65535, no host,
        a host that is not a valid (internationalised) name or IPv4 address.
    """
    if not url:
        return UrlProblem("url_malformed", "empty URL")
    if len(url) > MAX_URL_CHARS:
        return UrlProblem("url_malformed", f"{len(url)} characters, more than {MAX_URL_CHARS}")
    scheme = _SCHEME.match(url)
    if scheme is None:
        return UrlProblem("url_malformed", f"no scheme (not an absolute URL): {_shown(url)}")
    if scheme.group(1).lower() not in ("http", "https"):
        return UrlProblem("not_http", f"not an http(s) URL: {_shown(url)}")
    unsafe = _UNSAFE_CHAR.search(url)
    if unsafe:
        return UrlProblem("url_malformed", f"{unsafe.group()!a} at character {unsafe.start()}")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as e:
        return UrlProblem("url_malformed", f"{_shown(str(e))}: {_shown(url)}")
    if port == 0:
        return UrlProblem("url_malformed", f"port 0: {_shown(url)}")
    host = parts.hostname
    if not host:
        return UrlProblem("url_malformed", f"no host: {_shown(url)}")
    reason = None if parts.netloc.rpartition("@")[2].startswith("[") else _host_name_problem(host)
    return UrlProblem("url_malformed", f"{reason}: {_shown(url)}") if reason else None


def _host_name_problem(host: str) -> str | None:
    """Why a (lower-case, bracket-less) host is not a valid name or IPv4 address, or None."""
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError) as e:
            return f"the host is not a valid internationalised name ({_shown(str(e))})"
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    if len(host) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        return "the host is not a valid name"
    # WHATWG URL: a host whose last label is a number is an IPv4 address, in some notation
    if _NUMERIC_LABEL.fullmatch(labels[-1]) and literal_address(".".join(labels)) is None:
        return "the host is not a valid IPv4 address"
    return None


def _shown(url: str, limit: int = 100) -> str:
    """The URL for a one-line reason: printable ASCII only, at most `limit` characters."""
    text = url.encode("ascii", "backslashreplace").decode("ascii")
    text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
    return text if len(text) <= limit else text[:limit] + "..."


def check_literal(host: str, allowed: tuple[Network, ...]) -> None:
    """Raises `ForbiddenAddress` when `host` is an IP literal outside the allowed networks."""
    address = literal_address(host)
    if address is not None and not is_allowed_address(address, allowed):
        raise ForbiddenAddress(f"{address} is a private, loopback, link-local or reserved address")


class GuardedResolver(AbstractResolver):
    """An aiohttp resolver that refuses names resolving to any forbidden address."""

    def __init__(self, allowed: tuple[Network, ...]) -> None:
        self._allowed = allowed
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            if not is_allowed_address(result["host"], self._allowed):
                raise ForbiddenAddress(f"{host} resolves to {result['host']}, which is not a public address")
        return results

    async def close(self) -> None:
        await self._inner.close()
