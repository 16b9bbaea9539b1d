"""Cloud Storage on 127.0.0.1: a real emulator (`gcp-storage-emulator`) in a child process.

The Google client libraries, and so Beam's `gs://` file system and MLflow's GCS artifact
store, send their requests to `STORAGE_EMULATOR_HOST` when it is set, without credentials.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_gcs_emulator(buckets: tuple[str, ...] = ("alignpipe-test",)) -> Iterator[str]:
    """Starts an in-memory emulator with `buckets` created; yields its `http://127.0.0.1:PORT`."""
    port = _free_port()
    command = [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--in-memory", "--default-bucket", buckets[0]]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gcp-storage-emulator did not start: {process.stderr.read()[-2000:]!r}")
            time.sleep(0.1)
        for bucket in buckets[1:]:
            _create_bucket(url, bucket)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def _create_bucket(url: str, bucket: str) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project="test", credentials=AnonymousCredentials(), client_options={"api_endpoint": url}
    )
    client.create_bucket(bucket)


@pytest.fixture
def gcs_bucket(monkeypatch) -> Iterator[str]:
    """`gs://alignpipe-test` in a fresh emulator; the Google clients in this process and its
    children (STORAGE_EMULATOR_HOST is inherited) reach it."""
    with running_gcs_emulator() as url:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", url)
        monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "test")
        yield "gs://alignpipe-test"
