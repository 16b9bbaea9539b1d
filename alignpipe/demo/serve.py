"""A real HTTP server for a local folder, to scrape the demo web or test sites."""

from __future__ import annotations

import contextlib
import functools
import http.server
import threading
from collections.abc import Iterator


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    request_queue_size = 128  # the default 5 drops connections under parallel downloads
    daemon_threads = True


@contextlib.contextmanager
def serve_folder(folder: str, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serves `folder` over HTTP while the context is open.

    Args:
        folder: the document root (missing files answer 404).
        host: interface to bind.
        port: TCP port; 0 picks a free one.

    Yields:
        The base URL, e.g. `"http://127.0.0.1:54321/"`.

    Example:
        >>> with serve_folder("site") as url:
        ...     urllib.request.urlopen(url + "index.html").status
        200
    """
    handler = functools.partial(_QuietHandler, directory=folder)
    server = _Server((host, port), handler)
    thread = threading.Thread(target=server.serve_forever, name=f"serve {folder}", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
