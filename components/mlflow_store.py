"""Where MLflow keeps runs, and setting up a new local store ahead of time.

This module imports nothing heavy (not MLflow): a command calls `prepare` before its own
imports, so that the seconds of CPU a new SQLite store costs (MLflow builds its schema through
every migration) run on another core while the command imports and works. The child runs at the
lowest priority, so a command that keeps every core busy loses next to nothing to it.
"""

from __future__ import annotations

import base64
import logging
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

from alignpipe.config import Config
from alignpipe.errors import AlignPipeError

log = logging.getLogger("alignpipe")
_SETUP: dict[str, subprocess.Popen] = {}  # tracking URI -> the child creating that store
# The child runs at the lowest CPU priority: it takes cores the command leaves idle (waiting on
# the network), not cores its own work needs.
_CREATE = (
    "import os, sys; os.nice(19); from mlflow.tracking import MlflowClient;"
    " MlflowClient(sys.argv[1]).search_experiments()"
)


def tracking_uri(cfg: Config) -> str:
    """The configured tracking URI, or a SQLite store inside `runner.work_dir` (local runs only:
    elsewhere every task has its own disk, so the config requires a server)."""
    if cfg.tracking.tracking_uri:
        return cfg.tracking.tracking_uri
    return f"sqlite:///{os.path.abspath(os.path.join(cfg.runner.work_dir, 'mlflow.db'))}"


def prepare(cfg: Config) -> None:
    """Starts creating the local SQLite store in a child process if it does not exist yet.

    `wait` (called by `tracking.connect`) waits for it. Nothing happens for a store that exists
    or a tracking server.
    """
    uri = tracking_uri(cfg)
    path = uri.removeprefix("sqlite:///")
    if not uri.startswith("sqlite:///") or os.path.exists(path) or uri in _SETUP:
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    _SETUP[uri] = subprocess.Popen([sys.executable, "-c", _CREATE, uri], stdout=subprocess.DEVNULL)


def wait(uri: str) -> None:
    """Waits for the store `prepare` started for `uri`, if any.

    A child still at work is now on the caller's critical path: it gets the caller's CPU
    priority back where the system allows it (on a busy machine a niced child would otherwise
    wait behind everything else).
    """
    setup = _SETUP.pop(uri, None)
    if setup is not None and setup.poll() is None:
        try:
            os.setpriority(os.PRIO_PROCESS, setup.pid, os.getpriority(os.PRIO_PROCESS, 0))
        except OSError:  # raising a priority needs privileges; it then finishes at its own pace
            pass
    if setup is not None and setup.wait() != 0:
        # the caller then creates the store itself, and reports any real problem with it
        log.warning("setting up the MLflow store %s ahead of time failed (exit %d)", uri, setup.returncode)


def check_server(uri: str, wait_s: float, caller: str = "", auth: str = "") -> None:
    """Waits up to `wait_s` for a tracking server's `/health` to answer (a server scaled to zero
    takes a while); nothing for a local store.

    The check sends the credentials MLflow's client would send (`MLFLOW_TRACKING_TOKEN`, or
    `MLFLOW_TRACKING_USERNAME` / `_PASSWORD`). A 401 or 403 means the server is reachable but
    refuses this caller: on Cloud Run, the caller lacks `roles/run.invoker` on the service or
    sent no Google ID token. That fails at once, as every later request would.

    Args:
        uri: the tracking server.
        wait_s: how long to wait for it.
        caller: who calls it (`runner.service_account`), named in a refusal; "" = unknown.
        auth: `tracking.auth`, named in a refusal.

    Raises:
        AlignPipeError: the server refuses the caller, or does not answer in time (naming it and
            the last error).
    """
    if not uri.startswith(("http://", "https://")):
        return
    deadline, error = time.monotonic() + wait_s, ""
    headers = _credentials()
    while True:
        try:
            request = urllib.request.Request(uri.rstrip("/") + "/health", headers=headers)
            with urllib.request.urlopen(request, timeout=10) as response:
                if response.status == 200:
                    return
                error = f"HTTP {response.status}"
        except urllib.error.HTTPError as e:
            error = f"HTTP {e.code}"
            if e.code in (401, 403):
                raise AlignPipeError(_refusal(uri, e.code, caller, auth)) from None
        except OSError as e:
            error = str(getattr(e, "reason", e))
        if time.monotonic() >= deadline:
            raise AlignPipeError(
                f"the MLflow tracking server {uri} does not answer ({error}) after {wait_s:g} s "
                "(tracking.tracking_uri, tracking.server_wait_s)"
            )
        time.sleep(min(2.0, max(0.1, deadline - time.monotonic())))


def _credentials() -> dict[str, str]:
    """The Authorization header MLflow's client sends, from the same environment variables."""
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if token:
        return {"Authorization": f"Bearer {token}"}
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}
    return {}


def _refusal(uri: str, status: int, caller: str, auth: str) -> str:
    who = caller or "the task's service account (runner.service_account unset: the project's default)"
    fix = (
        ""
        if auth == "google_id_token"
        else "; set tracking.auth=google_id_token (a Cloud Run service takes only Google ID tokens)"
    )
    return (
        f"the MLflow tracking server {uri} is reachable but refuses {who} (HTTP {status}): grant it "
        f"roles/run.invoker on the server's Cloud Run service{fix} (tracking.auth={auth!r})"
    )
