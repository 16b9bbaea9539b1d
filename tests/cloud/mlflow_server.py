"""A real `mlflow server` on 127.0.0.1, started with the artifact flags a test asks for, and
those flags as infra/terraform gives them to the Cloud Run service."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tests.gcs_emulator import _free_port
from tests.infra import terraform_policy as policy

TERRAFORM = Path(__file__).resolve().parents[2] / "infra" / "terraform"
_ARTIFACT_FLAG = re.compile(
    r"--(?:no-)?serve-artifacts\b|--(?:default-artifact-root|artifacts-destination)\s+[^\s\"',\]]+"
)


def terraform_artifact_args(bucket: str) -> list[str]:
    """The artifact flags of the server command in infra/terraform/mlflow.tf, with the pipeline
    bucket's name replaced by `bucket` (a name, no `gs://`)."""
    module = policy.load_module(TERRAFORM)
    command = policy.substitute_locals(module.locals["mlflow_server_command"], module)
    command = command.replace("${local.bucket_name}", bucket)
    return [part for flag in _ARTIFACT_FLAG.findall(command) for part in flag.split()]


@contextlib.contextmanager
def running_mlflow_server(
    root: Path, artifact_args: list[str], env: dict[str, str] | None = None
) -> Iterator[str]:
    """`mlflow server` with a SQLite store in `root` and `artifact_args`; yields its URL.

    The server inherits this process's environment (`STORAGE_EMULATOR_HOST` for a `gs://`
    artifact store in the emulator) with `env` over it."""
    root.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", *artifact_args]
    with open(root / "server.log", "w") as log:
        # A session of its own: the server's workers are its children, stopped with it.
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=root,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            with contextlib.suppress(OSError), urllib.request.urlopen(url + "/health", timeout=2) as r:
                if r.status == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}"
                )
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
