"""Shared fixtures: the demo web (written once per session), a site-writing helper, a dead URL."""

from __future__ import annotations

import os
import socket

import pytest

from alignpipe.demo.demo_web import DemoWeb, write_demo_web

# Tests talk to 127.0.0.0/8 only: no MLflow usage reports (the servers and tasks they start
# inherit this).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture(scope="session")
def demo_web(tmp_path_factory) -> DemoWeb:
    return write_demo_web(str(tmp_path_factory.mktemp("demo-web")), seed=0)


@pytest.fixture
def make_site(tmp_path):
    """`make_site({"index.html": "...", "img/a.png": b"..."})` writes files under a fresh
    folder and returns its path."""

    def make(files: dict[str, str | bytes]) -> str:
        root = tmp_path / "site"
        for name, content in files.items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, str):
                path.write_text(content, encoding="utf-8")
            else:
                path.write_bytes(content)
        return str(root)

    return make


@pytest.fixture
def dead_url() -> str:
    """An http URL on a local port nothing listens on (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


from tests.gcs_emulator import gcs_bucket  # noqa: E402, F401  (the fixture, for every test module)
