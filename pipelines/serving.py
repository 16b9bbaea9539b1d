"""`alignpipe serve`: where the model comes from, where the server listens, and running it.

The same server is the local search page and the Vertex AI serving container. Vertex AI's
custom-container contract is environment variables read when the server starts:

| variable            | meaning                                       | used as                    |
|---------------------|-----------------------------------------------|----------------------------|
| `AIP_HTTP_PORT`     | the port Vertex AI sends requests to          | `--port` (0.0.0.0 is bound)|
| `AIP_HEALTH_ROUTE`  | its readiness probe's path                    | the health route           |
| `AIP_PREDICT_ROUTE` | its prediction requests' path                 | the predict route          |
| `AIP_STORAGE_URI`   | the gs:// copy of the uploaded model artifacts | `--model` when none is given |

`--model` is a model folder written by `train` (or its `saved_model/`), local or `gs://`, or an
MLflow registry URI (`models:/NAME/VERSION`, `models:/NAME@ALIAS`) downloaded through MLflow.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from collections.abc import Mapping

from alignpipe.errors import InputError
from alignpipe.serving import DEFAULT_PORT, HEALTH_ROUTE, PREDICT_ROUTE
from alignpipe.serving.queries import QueryLimits

log = logging.getLogger("alignpipe")
ANY_INTERFACE = "0.0.0.0"  # inside a container, Vertex AI's requests come from outside it
MAX_CONCURRENT_REQUESTS = 64  # past this uvicorn answers 503 at once instead of queueing


@dataclasses.dataclass(frozen=True)
class ServeTarget:
    """Where the server listens and on which routes."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    health_route: str = HEALTH_ROUTE
    predict_route: str = PREDICT_ROUTE


def serve_target(host: str | None, port: int | None, environ: Mapping[str, str]) -> ServeTarget:
    """Flags first, then Vertex AI's variables, then the defaults (127.0.0.1:8080, /health,
    /predict). Under `AIP_HTTP_PORT` the server binds every interface unless `--host` says.

    Raises:
        InputError: a variable's value is unusable (named, with what is allowed).
    """
    aip_port = environ.get("AIP_HTTP_PORT", "")
    if aip_port and not (aip_port.isdigit() and 0 < int(aip_port) < 65536):
        raise InputError(f"AIP_HTTP_PORT={aip_port!r} is not a TCP port (1-65535)")
    routes = {}
    for variable, default in (("AIP_HEALTH_ROUTE", HEALTH_ROUTE), ("AIP_PREDICT_ROUTE", PREDICT_ROUTE)):
        routes[variable] = environ.get(variable) or default
        if not routes[variable].startswith("/"):
            raise InputError(f"{variable}={routes[variable]!r} is not a path (must start with '/')")
    return ServeTarget(
        host=host or (ANY_INTERFACE if aip_port else "127.0.0.1"),
        port=port if port is not None else int(aip_port or DEFAULT_PORT),
        health_route=routes["AIP_HEALTH_ROUTE"],
        predict_route=routes["AIP_PREDICT_ROUTE"],
    )


def resolve_model(model: str | None, environ: Mapping[str, str], download_dir: str) -> str:
    """The model folder to load: `model`, or `AIP_STORAGE_URI`; an MLflow `models:/` URI is
    downloaded into `download_dir` first (the tracking server is MLflow's own setting,
    `MLFLOW_TRACKING_URI`, or `--tracking-uri`).

    Raises:
        InputError: no model given, or the registry has no such model.
    """
    model = model or environ.get("AIP_STORAGE_URI", "")
    if not model:
        raise InputError("no model: pass --model MODEL_DIR_OR_URI (or set AIP_STORAGE_URI)")
    if not model.startswith("models:/"):
        return model
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.artifacts.download_artifacts(artifact_uri=model, dst_path=download_dir)
    except MlflowException as e:
        raise InputError(f"cannot download {model} from MLflow: {e.message}") from None


def find_model_folder(root: str) -> str:
    """The folder under a downloaded MLflow model that holds `saved_model/` (the pyfunc model's
    `model_dir` artifact), or `root` itself."""
    for folder, subfolders, _ in sorted(os.walk(root)):
        if "saved_model" in subfolders:
            return folder
    return root


def serve(
    model: str | None,
    index: str | None,
    target: ServeTarget,
    limits: QueryLimits | None = None,
    environ: Mapping[str, str] = os.environ,
) -> None:
    """Loads the model (and index) and serves them until interrupted."""
    import uvicorn

    from alignpipe.serving.embedder import QueryEmbedder
    from alignpipe.serving.http_app import build_app
    from alignpipe.serving.search_service import SearchService

    with tempfile.TemporaryDirectory(prefix="alignpipe-serve-") as tmp:
        path = resolve_model(model, environ, tmp)
        embedder = QueryEmbedder.load(find_model_folder(path) if "://" not in path else path)
        corpus = _load_index(index) if index else None
        service = SearchService(embedder, corpus, limits or QueryLimits())
        app = build_app(service, target.health_route, target.predict_route)
        shown = "127.0.0.1" if target.host == ANY_INTERFACE else target.host
        log.info("serving %s%s on http://%s:%d/", path, f" and {index}" if index else "", shown, target.port)
        uvicorn.run(
            app,
            host=target.host,
            port=target.port,
            limit_concurrency=MAX_CONCURRENT_REQUESTS,
            access_log=False,
            log_level="warning",
        )


def _load_index(path: str):
    from alignpipe.search.corpus_index import CorpusIndex

    try:
        return CorpusIndex.load(path)
    except ValueError as e:
        raise InputError(str(e)) from None
