"""Fixtures for pipeline-level tests: a real MLflow server and one real local pipeline run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ALIGNPIPE = [sys.executable, "-m", "pipelines.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """`mlflow server` on 127.0.0.1 with a SQLite store and proxied artifacts; yields its URL."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = open(root / "server.log", "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=root,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
        time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def run_cli(
    *args: str, timeout: float = 1800, cwd: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Runs `alignpipe ARGS` as a user would (with `env` added to the environment); returns the
    completed process (text output)."""
    return subprocess.run(
        [*ALIGNPIPE, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or ROOT,
        env={**os.environ, **env} if env else None,
    )


def model_dir_of(work_dir: str) -> str:
    """The model folder a local pipeline run in `work_dir` wrote (the train task's output)."""
    for root, _, files in os.walk(os.path.join(work_dir, "kfp-root")):
        if "model.keras" in files:
            return root
    raise AssertionError("no model folder under kfp-root")


@pytest.fixture(scope="session")
def pipeline_run(mlflow_server, tmp_path_factory):
    """One `alignpipe run` of the whole DAG on the demo web, tracked on the MLflow server."""
    work = tmp_path_factory.mktemp("work")
    started = time.time()
    proc = run_cli("run", "--work-dir", str(work), "--tracking-uri", mlflow_server)
    if proc.returncode != 0:
        pytest.fail(
            f"alignpipe run failed ({proc.returncode}):\n{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"
        )
    return {
        "work_dir": str(work),
        "stdout": proc.stdout,
        "stderr": proc.stderr,
        "tracking_uri": mlflow_server,
        "seconds": time.time() - started,
    }
