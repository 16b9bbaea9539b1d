"""Which network addresses a scrape may connect to.

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
from collections.abc import Iterable

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_LEGACY_IPV4 = re.compile(r"(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]+|[0-9]+)){0,3}", re.IGNORECASE)


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
