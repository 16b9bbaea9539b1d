"""Credentials for a shared MLflow tracking server (`tracking.auth`).

MLflow's client sends `MLFLOW_TRACKING_TOKEN` as `Authorization: Bearer <token>` with every
request (and `MLFLOW_TRACKING_USERNAME` / `_PASSWORD` as basic auth); it reads them from the
environment on each request. `tracking.auth` fills the token where the environment cannot:

- `""`: nothing; whatever the environment holds is used.
- `google_id_token`: a Google-signed ID token for the server's URL, from the task's own
  credentials (its service account on Vertex AI, or GOOGLE_APPLICATION_CREDENTIALS): what a
  Cloud Run server behind IAM (infra/terraform) accepts. ID tokens live an hour; a background
  timer replaces it every `REFRESH_S`, so that a day of training keeps logging.
- `secret:projects/P/secrets/S/versions/V`: the token stored in that Secret Manager secret
  version (an auth proxy's static token, say). Never for a Cloud Run server: its IAM accepts
  only Google-signed ID tokens, and loading the config refuses the pair.
"""

from __future__ import annotations

import logging
import os
import threading

from alignpipe.config import Config
from alignpipe.errors import AlignPipeError

log = logging.getLogger("alignpipe")

TOKEN_ENV = "MLFLOW_TRACKING_TOKEN"
REFRESH_S = 45 * 60  # ID tokens expire after 60 minutes
SECRET_PREFIX = "secret:"
_REFRESHING: dict[str, threading.Timer] = {}


def authenticate(cfg: Config, uri: str) -> None:
    """Puts a token for the server at `uri` into `MLFLOW_TRACKING_TOKEN`, as `tracking.auth` says.

    Raises:
        AlignPipeError: the token cannot be had (naming the mode and the cause).
    """
    mode = cfg.tracking.auth
    if not mode or not uri.startswith(("http://", "https://")):
        return
    os.environ[TOKEN_ENV] = fetch_token(mode, uri)
    if mode == "google_id_token" and uri not in _REFRESHING:
        _schedule_refresh(mode, uri)


def fetch_token(mode: str, uri: str) -> str:
    """A fresh token for `uri` in `mode` (`google_id_token` or `secret:<version name>`)."""
    try:
        if mode == "google_id_token":
            import google.auth.transport.requests
            import google.oauth2.id_token

            return google.oauth2.id_token.fetch_id_token(google.auth.transport.requests.Request(), uri)
        if mode.startswith(SECRET_PREFIX):
            name = mode.removeprefix(SECRET_PREFIX)
            return secret_client().access_secret_version(name=name).payload.data.decode("utf-8").strip()
    except Exception as e:  # google-auth and the API raise many kinds; all mean "no token"
        raise AlignPipeError(f"tracking.auth={mode!r}: no token for the MLflow server {uri}: {e}") from None
    raise AlignPipeError(
        f"tracking.auth={mode!r} is not allowed: use '', 'google_id_token' or "
        "'secret:projects/P/secrets/S/versions/V'"
    )


def secret_client():
    """The Secret Manager client (`SECRET_MANAGER_ENDPOINT` points it elsewhere, for tests)."""
    from google.cloud import secretmanager

    endpoint = os.environ.get("SECRET_MANAGER_ENDPOINT")
    if not endpoint:
        return secretmanager.SecretManagerServiceClient()
    from google.auth.credentials import AnonymousCredentials

    return secretmanager.SecretManagerServiceClient(
        credentials=AnonymousCredentials(), transport="rest", client_options={"api_endpoint": endpoint}
    )


def _schedule_refresh(mode: str, uri: str) -> None:
    def refresh() -> None:
        try:
            os.environ[TOKEN_ENV] = fetch_token(mode, uri)
        except AlignPipeError as e:  # keep the old token; the next request reports any failure
            log.warning("%s", e)
        _schedule_refresh(mode, uri)

    timer = threading.Timer(REFRESH_S, refresh)
    timer.daemon = True
    _REFRESHING[uri] = timer
    timer.start()
