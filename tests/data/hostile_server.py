"""A hostile web site on loopback: each path is one thing the real web does to a scraper.

`hostile_site()` starts five threaded HTTP servers and yields a `HostileSite`:

| name        | address              | serves                                                 |
|-------------|----------------------|--------------------------------------------------------|
| `main`      | 127.0.0.1:P          | index.html, pages and images, one hazard per path       |
| `forbidden` | 127.0.0.2:P          | anything; a scraper must never connect to it            |
| `flaky`     | 127.0.0.1:Q          | robots.txt answers 503 once, then rules                 |
| `down`      | 127.0.0.1:R          | robots.txt answers 503 always                           |
| `sitemaps`  | 127.0.0.1:S          | robots.txt naming hostile sitemaps (`hostile_sitemaps`) |

Every server records each connection and each request (path, time, User-Agent), so
tests can assert what was, and what was never, fetched. Responses are small functions
of the request handler (`Responder`); the route tables at the end are the site.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import http.server
import io
import socket
import struct
import threading
import time
import traceback
import urllib.parse
import zlib
from collections.abc import Callable, Iterator
from typing import NamedTuple

import numpy as np
from PIL import Image

from tests.data.hostile_sitemaps import SITEMAP_PAGES, sitemap_files

DRIP_INTERVAL_S = 0.5
HANG_LIMIT_S = 30.0  # slow and stalled responses give up after this (or at shutdown)
TOO_LARGE_BYTES = 300_000  # over the tests' scrape.max_image_bytes / max_page_bytes
BOMB_SIDE = 30_000  # a 30000 x 30000 PNG of about 110 KB

Responder = Callable[["_Handler"], None]


# Responses ---------------------------------------------------------------------------------------


def head(h: _Handler, code: int, content_type: str, length: int | None, headers=()) -> None:
    """Status line and headers; `length=None` sends the body chunked."""
    h.send_response(code)
    h.send_header("Content-Type", content_type)
    h.send_header(*(("Transfer-Encoding", "chunked") if length is None else ("Content-Length", str(length))))
    for name, value in headers:
        h.send_header(name, value)
    h.end_headers()


def ok(body: bytes, content_type: str, headers=(), code: int = 200) -> Responder:
    def respond(h: _Handler) -> None:
        head(h, code, content_type, len(body), headers)
        h.wfile.write(body)

    return respond


def status(code: int, headers=()) -> Responder:
    return ok(f"{code}\n".encode(), "text/plain", headers, code)


def redirect(location: str, code: int = 302) -> Responder:
    return ok(b"", "text/html", [("Location", location)], code)


def fail_first(times: int, failure: Responder, then: Responder) -> Responder:
    """`failure` for the first `times` requests of the path, `then` afterwards."""
    return lambda h: (failure if h.hit_number <= times else then)(h)


def slow_drip(content_type: str) -> Responder:
    """Announces 10 KB, then sends one byte per `DRIP_INTERVAL_S`: never done in time."""

    def respond(h: _Handler) -> None:
        head(h, 200, content_type, 10_000)
        h.close_connection = True
        end = time.monotonic() + HANG_LIMIT_S
        while time.monotonic() < end and not h.server.stopping.wait(DRIP_INTERVAL_S):
            h.wfile.write(b"\x89")  # unbuffered: each byte is its own TCP segment

    return respond


def stall(body: bytes, content_type: str) -> Responder:
    """Announces `body`, sends 100 bytes of it, then nothing until the client gives up."""

    def respond(h: _Handler) -> None:
        head(h, 200, content_type, len(body))
        h.wfile.write(body[:100])
        h.close_connection = True
        h.server.stopping.wait(HANG_LIMIT_S)

    return respond


def closed_mid_body(body: bytes, content_type: str) -> Responder:
    """Announces `body`, sends its first fifth, then closes the connection."""

    def respond(h: _Handler) -> None:
        head(h, 200, content_type, len(body))
        h.wfile.write(body[: len(body) // 5])
        h.close_connection = True

    return respond


def chunked(body: bytes, content_type: str, size: int = 16_384) -> Responder:
    """`Transfer-Encoding: chunked`: no Content-Length to refuse the body by."""

    def respond(h: _Handler) -> None:
        head(h, 200, content_type, None)
        for piece in (body[i : i + size] for i in range(0, len(body), size)):
            h.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        h.wfile.write(b"0\r\n\r\n")

    return respond


def empty_reply(h: _Handler) -> None:
    """Reads the request, answers nothing, closes."""
    h.close_connection = True


def reset(h: _Handler) -> None:
    """Reads the request and resets the connection (RST, no response)."""
    h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    h.connection.close()  # really closed, with the RST, once the handler's files close
    h.close_connection = True


# Servers -----------------------------------------------------------------------------------------


@dataclasses.dataclass
class RequestLog:
    """What one server saw: connections accepted, and (time, User-Agent) per request path."""

    connections: int = 0
    hits: dict[str, list[tuple[float, str]]] = dataclasses.field(default_factory=dict)
    errors: list[str] = dataclasses.field(default_factory=list)  # the server's own bugs
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)

    def record(self, path: str, user_agent: str) -> int:
        with self.lock:
            self.hits.setdefault(path, []).append((time.monotonic(), user_agent))
            return len(self.hits[path])

    def times(self, path: str) -> list[float]:
        with self.lock:
            return [t for t, _ in self.hits.get(path, ())]

    def user_agents(self) -> set[str]:
        with self.lock:
            return {ua for hits in self.hits.values() for _, ua in hits}


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked bodies, like real servers
    timeout = HANG_LIMIT_S  # idle keep-alive connections
    server: _Server

    def do_GET(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        self.hit_number = self.server.log.record(path, self.headers.get("User-Agent", ""))
        responder = self.server.routes.get(path)
        if responder is None:
            status(404)(self)
        else:
            responder(self)

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionError, TimeoutError):
            pass  # the client went away: what hostile clients and timeouts do

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    request_queue_size = 128
    daemon_threads = False  # server_close() joins every handler thread
    block_on_close = True

    def __init__(self, address: tuple[str, int]) -> None:
        self.routes: dict[str, Responder] = {}
        self.log = RequestLog()
        self.stopping = threading.Event()
        self._open: set[socket.socket] = set()
        super().__init__(address, _Handler)

    def verify_request(self, request, client_address) -> bool:
        with self.log.lock:
            self.log.connections += 1
            self._open.add(request)
        return True

    def shutdown_request(self, request) -> None:
        with self.log.lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address) -> None:
        self.log.errors.append(traceback.format_exc())

    def close(self) -> None:
        """Stops accepting, wakes every hanging handler, and joins their threads."""
        self.stopping.set()
        self.shutdown()
        with self.log.lock:
            still_open = list(self._open)
        for sock in still_open:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self.server_close()


@contextlib.contextmanager
def _serving(host: str, port: int) -> Iterator[_Server]:
    server = _Server((host, port))
    serve = functools.partial(server.serve_forever, poll_interval=0.05)  # quick shutdown()
    thread = threading.Thread(target=serve, name=f"hostile {host}:{port}", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.close()
        thread.join()


# The site ----------------------------------------------------------------------------------------


@dataclasses.dataclass
class HostileSite:
    """The running site.

    Attributes:
        bases: `{"main": "http://127.0.0.1:P", "forbidden": ..., "flaky": ..., "down": ...,
            "sitemaps": ..., "port": "P"}`, to fill URL templates such as `"{main}/img/photo.jpg"`.
        logs: each server's `RequestLog`, by name; `logs["forbidden"]` is None when
            127.0.0.2 could not be bound.
        files: the bytes served at each path of `main` that holds a real image.
    """

    bases: dict[str, str]
    logs: dict[str, RequestLog | None]
    files: dict[str, bytes]

    def url(self, template: str) -> str:
        return template.format(**self.bases)

    def server_errors(self) -> list[str]:
        return [e for log in self.logs.values() if log is not None for e in log.errors]


def random_image(fmt: str, width: int, height: int, seed: int, **save: object) -> bytes:
    """Noise in `fmt` (so it is over 1 KB and does not compress away)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt, **save)
    return out.getvalue()


def png_bomb(side: int = BOMB_SIDE) -> bytes:
    """A valid 1-bit greyscale PNG, `side` x `side` pixels of black, deflated to ~1/1000."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits
    deflate = zlib.compressobj(9)
    block = row * 1000
    data = b"".join(deflate.compress(block) for _ in range(side // 1000))
    data += deflate.compress(row * (side % 1000)) + deflate.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def make_files() -> dict[str, bytes]:
    """Every real image `main` serves, by path: noise (so over 1 KB), in each accepted format."""
    files = {
        "/img/photo.jpg": random_image("JPEG", 96, 64, 1, quality=90),
        "/img/chart.png": random_image("PNG", 64, 48, 2),
        "/img/anim.gif": random_image("GIF", 48, 40, 3),
        "/img/pic.webp": random_image("WEBP", 64, 64, 4, quality=90),
        "/img/icon.bmp": random_image("BMP", 32, 24, 5),
        "/img/picture.tiff": random_image("TIFF", 32, 32, 6),
        "/img/bomb.png": png_bomb(),
    }
    pngs = """/img/mislabelled.png /img/chain-target.png /hops/5/5.png /img/retry-429-once.png
        /img/retry-503-once.png /img/cafe-header.png /img/cafe-meta.png /pages/moved/pic.png
        /img/noai-header.png /img/noimageai-header.png /img/on-noai-page.png /private/open/pic.png"""
    for i, path in enumerate(pngs.split()):
        files[path] = random_image("PNG", 40 + i, 32, 100 + i)
    for i, path in enumerate(["/private/photo.jpg", "/private/pic.png.jpg", "/private/ok.jpg"]):
        files[path] = random_image("JPEG", 48, 36 + i, 200 + i)
    files["/private/secret.png"] = files["/private/ok.png"] = files["/img/chart.png"]
    return files


def html(body: str) -> bytes:
    return f"<!doctype html><html><body>{body}</body></html>".encode()


def redirect_chain(routes: dict[str, Responder], prefix: str, hops: int, ext: str, final: Responder) -> None:
    """`{prefix}/0.{ext}` -> `1.{ext}` -> ... -> `{hops}.{ext}` (served by `final`), cycling codes."""
    for k in range(hops):
        routes[f"{prefix}/{k}.{ext}"] = redirect(f"{k + 1}.{ext}", (301, 302, 303, 307, 308)[k % 5])
    routes[f"{prefix}/{hops}.{ext}"] = final


ROBOTS_TXT = """\
User-agent: some-other-bot
Disallow: /

User-agent: *
Disallow: /private/*.png$
Allow: /private/ok*
Allow: /private/open/*.png$
Disallow: /members/
"""


class Page(NamedTuple):
    """A page of `main`: `body` is a template filled with `HostileSite.bases`."""

    body: str
    content_type: str = "text/html; charset=utf-8"
    encoding: str = "utf-8"


def main_routes(
    bases: dict[str, str], files: dict[str, bytes], pages: dict[str, Page]
) -> dict[str, Responder]:
    """The main site: robots.txt, `pages`, `files`, and a hazard on every other path."""
    routes = {"/robots.txt": ok(ROBOTS_TXT.encode(), "text/plain")}
    for path, page in pages.items():
        body = f"<!doctype html><html>{page.body.format(**bases)}</html>".encode(page.encoding)
        routes[path] = ok(body, page.content_type)
    for path, data in files.items():
        ext = path.rsplit(".", 1)[1]
        routes[path] = ok(data, "image/jpeg" if ext == "jpg" else f"image/{ext}")
    routes["/img/mislabelled.png"] = ok(files["/img/mislabelled.png"], "text/html; charset=utf-8")
    for tag in ("noai", "noimageai"):  # opted out by a header of the image response
        path = f"/img/{tag}-header.png"
        routes[path] = ok(files[path], "image/png", [("X-Robots-Tag", tag)])
    for code in (429, 503):  # one refusal saying "come back in 1 s", then the image
        path = f"/img/retry-{code}-once.png"
        routes[path] = fail_first(1, status(code, [("Retry-After", "1")]), routes[path])
    redirect_chain(routes, "/hops/5", 5, "png", routes["/hops/5/5.png"])
    return routes | hazard_routes(bases, files["/img/chart.png"], files["/img/photo.jpg"])


def hazard_routes(bases: dict[str, str], png_: bytes, jpg: bytes) -> dict[str, Responder]:
    """Paths of `main` whose answer is the hazard itself."""
    big = b"\x89PNG\r\n\x1a\n" + np.random.default_rng(9).bytes(TOO_LARGE_BYTES)
    wait_1s = [("Retry-After", "1")]
    routes = {f"/img/no-alt-{i}.png": ok(png_, "image/png") for i in (1, 2, 3)}
    redirect_chain(routes, "/hops/6", 6, "png", ok(png_, "image/png"))
    redirect_chain(routes, "/hops/6", 6, "html", ok(html("<p>far away</p>"), "text/html"))
    return routes | {
        "/img/html-as.png": ok(html("<p>not a picture</p>"), "image/png"),
        "/img/text-as.jpg": ok(b"just some text, not a picture\n" * 50, "image/jpeg"),
        "/img/drawing.svg": ok(b'<svg xmlns="http://www.w3.org/2000/svg"><script/></svg>', "image/svg+xml"),
        "/img/truncated.jpg": ok(jpg[: len(jpg) // 2], "image/jpeg"),
        "/img/truncated.png": ok(png_[: len(png_) // 2], "image/png"),
        "/img/too-large-length.png": ok(big, "image/png"),
        "/img/too-large-chunked.png": chunked(big, "image/png"),
        "/img/slow-drip.png": slow_drip("image/png"),
        "/img/stall.png": stall(png_, "image/png"),
        "/img/closed-mid-body.png": closed_mid_body(png_, "image/png"),
        "/img/reset.png": reset,
        "/img/empty-reply.png": empty_reply,
        "/img/busy-forever.png": status(503),
        "/img/retry-after-too-long.png": status(429, [("Retry-After", "10")]),
        "/redirect/good-1.png": redirect("good-2.png", 301),  # a relative Location
        "/redirect/good-2.png": redirect(bases["main"] + "/img/chain-target.png", 307),
        "/redirect/loop-a.png": redirect("loop-b.png"),
        "/redirect/loop-b.png": redirect("/redirect/loop-a.png"),
        "/redirect/to-forbidden.png": redirect(bases["forbidden"] + "/x.png"),
        "/redirect/page.html": redirect("/pages/moved/final.html"),
        "/redirect/loop-a.html": redirect("loop-b.html"),
        "/redirect/loop-b.html": redirect("loop-a.html"),
        "/redirect/to-forbidden.html": redirect(bases["forbidden"] + "/x.html"),
        "/slow-drip.html": slow_drip("text/html"),
        "/closed-mid-body.html": closed_mid_body(html("<p>cut</p>" * 500), "text/html"),
        "/huge.html": ok(html("<p>filler text</p>" * 10_000), "text/html"),
        "/feed": ok(b'{"not": "html"}', "application/json"),  # no extension to judge it by
        "/retry-429-once.html": fail_first(1, status(429, wait_1s), ok(html("ok"), "text/html")),
        "/busy-forever.html": status(503),
    }


def side_routes(png_: bytes) -> dict[str, dict[str, Responder]]:
    """The forbidden, flaky and down servers' routes, by server name."""
    page = ok(html('<img src="/x.png" alt="a picture behind the fence">'), "text/html")
    picture = ok(png_, "image/png")
    rules = ok(b"User-agent: *\nDisallow: /blocked/\n", "text/plain")
    return {
        "forbidden": {"/x.png": picture, "/direct.png": picture, "/decimal.png": picture}
        | {"/x.html": page, "/direct.html": page},
        "flaky": {"/robots.txt": fail_first(1, status(503), rules), "/img/pic.png": picture}
        | {"/blocked/pic.png": picture},
        "down": {"/robots.txt": status(503), "/img/pic.png": picture},
    }


def sitemap_routes(bases: dict[str, str]) -> dict[str, Responder]:
    """The `sitemaps` server: robots.txt, the sitemaps it names, and a page at each URL they list."""
    routes = {path: ok(body, content_type) for path, (body, content_type) in sitemap_files(bases).items()}
    for path in SITEMAP_PAGES:
        routes[urllib.parse.urlsplit(path).path] = ok(html(f"<p>{path} of a sitemap</p>"), "text/html")
    return routes


@contextlib.contextmanager
def hostile_site(pages: dict[str, Page]) -> Iterator[HostileSite]:
    """Starts the servers, yields the running `HostileSite`, then stops and joins them.

    Args:
        pages: the HTML pages of `main` by path (`/index.html` and the pages it links);
            every other path of `main` is a hazard of `main_routes`.

    The forbidden server shares the main server's port on 127.0.0.2; where that address
    cannot be bound (macOS configures only 127.0.0.1), it is left out and
    `logs["forbidden"]` is None.
    """
    files = make_files()
    with contextlib.ExitStack() as stack:
        names = ("main", "flaky", "down", "sitemaps")
        servers = {name: stack.enter_context(_serving("127.0.0.1", 0)) for name in names}
        port = servers["main"].server_address[1]
        with contextlib.suppress(OSError):
            servers["forbidden"] = stack.enter_context(_serving("127.0.0.2", port))
        bases = {name: f"http://127.0.0.1:{s.server_address[1]}" for name, s in servers.items()}
        bases |= {"forbidden": f"http://127.0.0.2:{port}", "port": str(port)}
        # Nobody knows the addresses yet, so routes can be filled in after binding.
        servers["main"].routes.update(main_routes(bases, files, pages))
        servers["sitemaps"].routes.update(sitemap_routes(bases))
        for name, routes in side_routes(files["/img/chart.png"]).items():
            if name in servers:
                servers[name].routes.update(routes)
        logs = {name: servers[name].log if name in servers else None for name in (*servers, "forbidden")}
        yield HostileSite(bases, logs, files)
