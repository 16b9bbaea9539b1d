"""The Cloud Run front door of the cloud tests: what it refuses, and what it passes on intact."""

from __future__ import annotations

import http.client
import time
import urllib.parse

import pytest
from google.auth import jwt

from tests.cloud.cloud_run_proxy import MAX_REQUEST_BYTES, running_cloud_run_proxy
from tests.cloud.google_id_tokens import IdTokenIssuer
from tests.local_http import QuietHandler, serving


class Upstream(QuietHandler):
    """Answers with the size of the body it got, and the Authorization header it saw."""

    protocol_version = "HTTP/1.1"
    received: list[int] = []

    def do_PUT(self) -> None:
        size = len(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        self.received.append(size)
        body = f"{size} {self.headers.get('Authorization')}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def upstream():
    Upstream.received = []
    with serving(Upstream) as url:
        yield url


def _put(url: str, body: bytes, headers: dict[str, str], chunked: bool = False) -> tuple[int, bytes]:
    parsed = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
    try:
        if chunked:
            pieces = (body[i : i + (1 << 20)] for i in range(0, len(body), 1 << 20))
            connection.request("PUT", "/upload", body=pieces, headers=headers, encode_chunked=True)
        else:
            connection.request("PUT", "/upload", body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _token(issuer: IdTokenIssuer, audience: str) -> str:
    now = int(time.time())
    return jwt.encode(issuer.signer, {"aud": audience, "iat": now, "exp": now + 600}).decode()


def test_a_caller_without_a_token_or_with_one_for_another_service_is_refused(upstream):
    issuer = IdTokenIssuer()
    with running_cloud_run_proxy(upstream, accept=issuer.accepts) as proxy:
        assert _put(proxy.url, b"x", {})[0] == 403
        assert _put(proxy.url, b"x", {"Authorization": "Bearer " + _token(issuer, "https://other")})[0] == 401
        assert (
            _put(proxy.url, b"x", {"Authorization": "Bearer " + _token(IdTokenIssuer(), proxy.url)})[0] == 401
        )
        assert Upstream.received == []
        good = "Bearer " + _token(issuer, proxy.url)
        assert _put(proxy.url, b"xyz", {"Authorization": good}) == (200, f"3 {good}".encode())
    assert [r.status for r in proxy.seen] == [403, 401, 401, 200]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_over_32_mib_is_refused_and_one_of_32_mib_passes(upstream, chunked):
    with running_cloud_run_proxy(upstream) as proxy:
        auth = {"Authorization": "Bearer any"}
        status, text = _put(proxy.url, b"\0" * (MAX_REQUEST_BYTES + 1), auth, chunked)
        assert status == 413 and b"Too Large" in text  # the client reads the answer, not a reset
        assert Upstream.received == []
        assert _put(proxy.url, b"\0" * MAX_REQUEST_BYTES, auth, chunked)[0] == 200
        assert Upstream.received == [MAX_REQUEST_BYTES]
    assert [(r.body_bytes, r.status) for r in proxy.seen] == [
        (MAX_REQUEST_BYTES + 1, 413),
        (MAX_REQUEST_BYTES, 200),
    ]
