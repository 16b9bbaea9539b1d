"""Cloud Storage on 127.0.0.1: a real emulator (`gcp-storage-emulator`) in a child process.

The Google client libraries, and so Beam's `gs://` file system and MLflow's GCS artifact
store, send their requests to `STORAGE_EMULATOR_HOST` when it is set, without credentials.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import pytest

from tests.gce_metadata import running_metadata_server


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
    # Its log (a line per request) goes to a file: a pipe nobody reads fills up, and the
    # single-threaded emulator then blocks every client.
    log_file = tempfile.TemporaryFile()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log_file)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                log_file.seek(0)
                raise RuntimeError(f"gcp-storage-emulator did not start: {log_file.read()[-2000:]!r}")
            time.sleep(0.1)
        for bucket in buckets[1:]:
            _create_bucket(url, bucket)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log_file.close()


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
    children (STORAGE_EMULATOR_HOST is inherited) reach it, with credentials from a metadata
    server on 127.0.0.1 (`tests.gce_metadata`), as on a Google Cloud worker."""
    with running_gcs_emulator() as url, running_metadata_server(monkeypatch):
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", url)
        monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "test")
        _stop_fork_server()
        try:
            yield "gs://alignpipe-test"
        finally:
            _stop_fork_server()


def _stop_fork_server() -> None:
    """multiprocessing's fork server keeps the environment it was started with, and so do the
    worker processes forked from it (the scrape's): stopped, the next pool starts one with the
    environment of the test that asks (this emulator's address, or none after it)."""
    from multiprocessing import forkserver

    forkserver._forkserver._stop()
