"""The search server's HTTP interface: JSON endpoints, the search page and thumbnails.

FastAPI on uvicorn, what Vertex AI's custom-container examples and most Python model servers
use: an ASGI server whose worker threads run the model (TensorFlow and NumPy release the GIL)
while the event loop keeps accepting, and whose `limit_concurrency` answers 503 past a bound
instead of queueing without end. Queries are computed at most one per core at a time
(`compute_threads`); more in flight would only share the cores, each slower (the model and the
matrix products use every core already), and raise every request's latency. The request bodies
are read and checked here (`queries`), not by FastAPI's model binding, so that every refusal is
one line in the same shape.

| route                          | method | answer                                            |
|--------------------------------|--------|---------------------------------------------------|
| `/`                            | GET    | the search page (HTML, CSS and JS of this package)|
| `/search/<search>`             | POST   | `search_service.SEARCHES`' results                |
| `/thumbnails/<item>`           | GET    | a JPEG of the item, or a redirect to its image    |
| `/info`                        | GET    | the model's dimension, the index's size, limits   |
| health route (`/health`)       | GET    | `{"status": "ok"}` once the model is loaded       |
| predict route (`/predict`)     | POST   | Vertex AI's `{"instances"}` -> `{"predictions"}`  |

A refused request answers `{"error": "<one line>"}` with a 4xx status; an unexpected failure
answers 500 with one line and is logged, traceback and all, on the server's side only.
"""

from __future__ import annotations

import functools
import importlib.resources
import logging
import os

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException

from alignpipe.errors import one_line
from alignpipe.serving import HEALTH_ROUTE, PREDICT_ROUTE
from alignpipe.serving.queries import QueryError, parse_json_object
from alignpipe.serving.search_service import SearchService

log = logging.getLogger("alignpipe")
PAGE_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
MAX_ERROR_CHARS = 300


def page_file(name: str) -> bytes:
    """A file of the search page (package data in `alignpipe/serving/page/`)."""
    return importlib.resources.files("alignpipe.serving").joinpath("page", name).read_bytes()


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": one_line(message, MAX_ERROR_CHARS)}, status_code=status)


class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` is answered 413 before it is read whole
    (by its Content-Length, or as it streams in), so that no request can fill the memory."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.max_bytes:
            return await self._refuse(scope, receive, send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await self._refuse(scope, receive, send)
            if not message.get("more_body"):
                break
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)

    async def _refuse(self, scope, receive, send):
        response = error(413, f"request body is over the limit of {self.max_bytes} bytes")
        await response(scope, receive, send)


def build_app(
    service: SearchService,
    health_route: str = HEALTH_ROUTE,
    predict_route: str = PREDICT_ROUTE,
    compute_threads: int | None = None,
) -> BodyLimit:
    """The ASGI application of `service`, the health and predict routes where Vertex AI wants them.

    Args:
        service: the model and index to answer with.
        health_route: the readiness route (Vertex AI: `AIP_HEALTH_ROUTE`).
        predict_route: the prediction route (Vertex AI: `AIP_PREDICT_ROUTE`).
        compute_threads: queries computed at once (default: the CPUs this process may use).
    """
    app = FastAPI(title="alignpipe search", docs_url=None, redoc_url=None, openapi_url=None)
    limiter = anyio.CapacityLimiter(compute_threads or len(os.sched_getaffinity(0)))

    async def compute(fn, *args):
        return await anyio.to_thread.run_sync(functools.partial(fn, *args), limiter=limiter)

    @app.get(health_route)
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/info")
    def info() -> dict[str, object]:
        return service.info()

    @app.post(predict_route)
    async def predict(request: Request) -> dict[str, object]:
        body = parse_json_object(await request.body())
        return await compute(service.predict, body)

    @app.post("/search/{kind}")
    async def search(kind: str, request: Request) -> dict[str, object]:
        body = parse_json_object(await request.body())
        return await compute(service.search, kind, body)

    _add_page_routes(app, service)
    _add_error_handlers(app)
    return BodyLimit(app, service.limits.max_request_bytes)


def _add_page_routes(app: FastAPI, service: SearchService) -> None:
    """The search page, its files and the results' thumbnails."""

    @app.get("/thumbnails/{item_id}")
    def thumbnail(item_id: int) -> Response:
        jpeg, image_url = service.thumbnail(item_id)
        if jpeg is not None:
            return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})
        if not image_url.startswith(("http://", "https://")):
            raise QueryError(f"item {item_id} has no thumbnail and no http(s) image URL", 404)
        return RedirectResponse(image_url, status_code=307)

    @app.get("/")
    def page() -> Response:
        return Response(page_file("index.html"), media_type="text/html; charset=utf-8")

    @app.get("/page/{name}")
    def page_asset(name: str) -> Response:
        suffix = name[name.rfind(".") :] if "." in name else ""
        if "/" in name or suffix not in PAGE_TYPES or name == "index.html":
            raise QueryError(f"no page file {name!r}", 404)
        try:
            data = page_file(name)
        except (FileNotFoundError, IsADirectoryError):
            raise QueryError(f"no page file {name!r}", 404) from None
        return Response(data, media_type=f"{PAGE_TYPES[suffix]}; charset=utf-8")


def _add_error_handlers(app: FastAPI) -> None:
    """Every refusal and failure as `{"error": "<one line>"}`; tracebacks stay in the log."""

    @app.exception_handler(QueryError)
    async def refused(request: Request, e: QueryError) -> JSONResponse:
        return error(e.status, str(e))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> JSONResponse:
        return error(e.status_code, f"{request.method} {request.url.path}: {e.detail}")

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error(400, f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(Exception)
    async def failed(request: Request, e: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return error(500, f"internal error: {type(e).__name__}: {e}")
