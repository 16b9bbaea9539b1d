"""Cloud Run's front door on 127.0.0.1: a reverse proxy that enforces the limits a Cloud Run
service puts on the requests it forwards.

- A request without an `Authorization` header is refused with 403, as Cloud Run refuses a
  caller of a service behind IAM (no `allUsers` invoker). `accept`, when given, also judges
  the header and the service's URL (a Google ID token whose audience is that URL, as Cloud Run
  checks it); a header it rejects gets 401, what public reports show Cloud Run answering a
  token it cannot verify. Callers treat both alike (`components.mlflow_store.check_server`).
- A request body over 32 MiB (`MAX_REQUEST_BYTES`, Cloud Run's limit for HTTP/1) is refused
  with 413 before anything reaches the service. The body is read to its end first, so that
  the client sees the 413 rather than a reset connection.

Everything else is forwarded to `upstream` and its answer returned. Each request is recorded
(method, path, body size, status) for tests to assert on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.local_http import QuietHandler

MAX_REQUEST_BYTES = 32 * 1024 * 1024
# Hop-by-hop headers (RFC 9110 7.6.1) stay on their own hop; the body is re-sent with a length.
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "host",
}


@dataclasses.dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    body_bytes: int
    status: int


class CloudRunProxy:
    """The proxy's state: where it forwards to, what it accepts, and what it saw."""

    def __init__(self, upstream: str, accept: Callable[[str, str], bool] | None = None) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        self.url = ""  # its own, once it listens
        self.upstream_host, self.upstream_port = parsed.hostname, parsed.port
        self.accept = accept
        self.seen: list[SeenRequest] = []
        self._lock = threading.Lock()

    def record(self, method: str, path: str, body_bytes: int, status: int) -> None:
        with self._lock:
            self.seen.append(SeenRequest(method, path, body_bytes, status))

    def refused(self, status: int) -> list[SeenRequest]:
        return [r for r in self.seen if r.status == status]


def _handler(proxy: CloudRunProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(QuietHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            body, size = self._read_body()
            authorization = self.headers.get("Authorization")
            if not authorization:
                self._answer(403, b"<html><body>Error: Forbidden</body></html>", size)
            elif proxy.accept is not None and not proxy.accept(authorization, proxy.url):
                self._answer(401, b"<html><body>Error: Unauthorized</body></html>", size)
            elif size > MAX_REQUEST_BYTES:
                self._answer(413, b"<html><body>Error: Request Entity Too Large</body></html>", size)
            else:
                self._relay(body, size)

        def _read_body(self) -> tuple[bytes, int]:
            """The body (kept only up to the limit) and its full size."""
            chunks, size = [], 0
            for chunk in self._body_chunks():
                size += len(chunk)
                if size <= MAX_REQUEST_BYTES:
                    chunks.append(chunk)
            return b"".join(chunks), size

        def _body_chunks(self) -> Iterator[bytes]:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                while True:
                    length = int(self.rfile.readline().split(b";")[0], 16)
                    if length == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        return
                    yield self.rfile.read(length)
                    self.rfile.readline()
            remaining = int(self.headers.get("Content-Length") or 0)
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 1 << 20))
                if not chunk:
                    return
                remaining -= len(chunk)
                yield chunk

        def _relay(self, body: bytes, size: int) -> None:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            headers["Host"] = f"{proxy.upstream_host}:{proxy.upstream_port}"
            upstream = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port, timeout=300)
            try:
                upstream.request(self.command, self.path, body=body if size else None, headers=headers)
                response = upstream.getresponse()
                data = response.read()
                self.send_response(response.status)
                for name, value in response.getheaders():
                    if name.lower() not in _HOP_BY_HOP:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                proxy.record(self.command, self.path, size, response.status)
            finally:
                upstream.close()

        def _answer(self, status: int, text: bytes, size: int) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=UTF-8")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)
            proxy.record(self.command, self.path, size, status)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _forward

    return Handler


@contextlib.contextmanager
def running_cloud_run_proxy(
    upstream: str, accept: Callable[[str, str], bool] | None = None
) -> Iterator[CloudRunProxy]:
    """Serves a `CloudRunProxy` in front of `upstream` on 127.0.0.1 (its `url`) and yields it."""
    proxy = CloudRunProxy(upstream, accept)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(proxy))
    server.daemon_threads = True
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
