"""One HTTP GET with the limits a polite, bounded crawler needs.

Every fetch ends in exactly one named outcome, which the scrape manifest records:
`ok`, `http_<status>` (e.g. `http_404`), `too_large` or `unreachable` (DNS failure,
refused connection, timeout, malformed URL; `Fetched.error` says which).
"""

from __future__ import annotations

import dataclasses
import http.client
import urllib.error
import urllib.request


@dataclasses.dataclass(frozen=True)
class Fetched:
    """The result of `fetch`.

    Attributes:
        url: the URL requested.
        final_url: the URL answered after redirects (resolve the page's links against it).
        outcome: `ok`, `http_<status>`, `too_large` or `unreachable`.
        status: the HTTP status, when a response arrived.
        content_type: the media type without parameters, lower case (e.g. `text/html`).
        body: the response body (empty unless `ok`).
        error: a one-line reason when not `ok`.
    """

    url: str
    final_url: str
    outcome: str
    status: int | None = None
    content_type: str = ""
    body: bytes = b""
    error: str = ""


def fetch(url: str, user_agent: str, timeout_s: float, max_bytes: int) -> Fetched:
    """GETs `url`, following redirects, reading at most `max_bytes` of body.

    Args:
        url: an absolute http(s) URL.
        user_agent: the `User-Agent` header.
        timeout_s: socket timeout for connecting and for each read.
        max_bytes: bodies longer than this give outcome `too_large`.

    Returns:
        A `Fetched`; never raises for network or HTTP errors.
    """
    request = urllib.request.Request(url, headers={"User-Agent": user_agent, "Accept": "*/*"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            content_type = response.headers.get_content_type()
            final_url = response.geturl()
            length = response.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > max_bytes:
                return Fetched(
                    url,
                    final_url,
                    "too_large",
                    response.status,
                    content_type,
                    error=f"Content-Length {length} > {max_bytes} bytes",
                )
            body = response.read(max_bytes + 1)
            if len(body) > max_bytes:
                return Fetched(
                    url,
                    final_url,
                    "too_large",
                    response.status,
                    content_type,
                    error=f"body longer than {max_bytes} bytes",
                )
            return Fetched(url, final_url, "ok", response.status, content_type, body)
    except urllib.error.HTTPError as e:
        return Fetched(url, e.geturl() or url, f"http_{e.code}", e.code, error=f"HTTP {e.code} {e.reason}")
    except urllib.error.URLError as e:
        return Fetched(url, url, "unreachable", error=str(e.reason))
    except (OSError, http.client.HTTPException, ValueError) as e:  # timeouts are OSErrors
        return Fetched(url, url, "unreachable", error=f"{type(e).__name__}: {e}")
