"""A tiny exported model, a corpus index of the demo web's retrieval images built with it, and
the search server on 127.0.0.1 (uvicorn in a thread, or `alignpipe serve` as a process)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text  # noqa: F401  (the WordPiece ops of the SavedModel)
import uvicorn

from alignpipe.config import load_config
from alignpipe.demo.serve import serve_folder
from alignpipe.model.dual_encoder import build_dual_encoder
from alignpipe.model.encoder import AlignEncoder
from alignpipe.model.export import IMAGE_SIGNATURE, SAVED_MODEL_DIR, TEXT_SIGNATURE
from alignpipe.model.tokenizer import AlignTokenizer
from alignpipe.search.corpus_index import CorpusIndex, Item
from tests.training.conftest import SMALL_MODEL

ROOT = Path(__file__).resolve().parents[2]
SMALL = [*SMALL_MODEL, "model.max_text_tokens=12", "model.vocab_size=120"]
INDEXED_IMAGES = 40
ALTS_PER_IMAGE = 2


def retrieval_entries(demo_web) -> list[dict]:
    """The demo web's retrieval set: Karpathy-format entries with `filename` and `sentences`."""
    with open(demo_web.retrieval_set) as f:
        return json.load(f)["images"]


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, demo_web) -> str:
    """An untrained dual encoder of test size, saved with its SavedModel (as `train` writes it)."""
    cfg = load_config("local", "tiny", SMALL)
    texts = [s["raw"] for e in retrieval_entries(demo_web) for s in e["sentences"]]
    tokenizer = AlignTokenizer.from_texts(texts, cfg.model.vocab_size, cfg.model.max_text_tokens)
    path = str(tmp_path_factory.mktemp("model"))
    AlignEncoder(build_dual_encoder(cfg.model, cfg.train), tokenizer, cfg).save(path)
    return path


@pytest.fixture(scope="session")
def signatures(model_dir):
    """The SavedModel's own `embed_image` and `embed_text`, what the server must agree with."""
    saved = tf.saved_model.load(os.path.join(model_dir, SAVED_MODEL_DIR))

    def embed_images(images: list[bytes]) -> np.ndarray:
        return saved.signatures[IMAGE_SIGNATURE](images=tf.constant(images))["embeddings"].numpy()

    def embed_texts(texts: list[str]) -> np.ndarray:
        return saved.signatures[TEXT_SIGNATURE](texts=tf.constant(texts))["embeddings"].numpy()

    embed_images.saved = embed_texts.saved = saved  # keeps the variables alive
    return embed_images, embed_texts


@pytest.fixture(scope="session")
def site(demo_web) -> Iterator[str]:
    """The retrieval set's folder over HTTP: the indexed images' web server."""
    with serve_folder(os.path.dirname(demo_web.retrieval_set)) as url:
        yield url


@pytest.fixture(scope="session")
def retrieval_images(demo_web) -> list[tuple[bytes, list[str], str]]:
    """(image file, alt-texts, file name) of the images the index holds."""
    folder = os.path.dirname(demo_web.retrieval_set)
    out = []
    for entry in retrieval_entries(demo_web)[:INDEXED_IMAGES]:
        with open(os.path.join(folder, entry["filepath"], entry["filename"]), "rb") as f:
            out.append((f.read(), [s["raw"] for s in entry["sentences"][:ALTS_PER_IMAGE]], entry["filename"]))
    return out


@pytest.fixture(scope="session")
def index_dir(tmp_path_factory, model_dir, signatures, retrieval_images, site) -> str:
    """A corpus index of the retrieval images, embedded with the model's own signatures."""
    embed_images, embed_texts = signatures
    images = embed_images([data for data, _, _ in retrieval_images])
    alts = [(i, text) for i, (_, texts, _) in enumerate(retrieval_images) for text in texts]
    items = [
        Item(f"{site}images/{name}", f"{site}pages/{name}.html", tuple(texts), f"sha-{i}")
        for i, (_, texts, name) in enumerate(retrieval_images)
    ]
    index = CorpusIndex(
        images,
        embed_texts([text for _, text in alts]),
        np.array([i for i, _ in alts], np.int64),
        items,
        model_uri=model_dir,
    )
    path = str(tmp_path_factory.mktemp("index"))
    index.save(path)
    return path


def free_socket() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.contextmanager
def running_app(app, limit_concurrency: int | None = None) -> Iterator[str]:
    """Serves the ASGI `app` with uvicorn on a free 127.0.0.1 port; yields its base URL."""
    sock = free_socket()
    config = uvicorn.Config(app, log_level="warning", access_log=False, limit_concurrency=limit_concurrency)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@contextlib.contextmanager
def serve_process(args: list[str], env: dict[str, str], health_url: str) -> Iterator[subprocess.Popen]:
    """`alignpipe serve ARGS` as a process, with `env` added; yields it once `health_url`
    answers 200, and stops it after."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "serve", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, f"alignpipe serve exited {proc.returncode}: {proc.stdout.read()}"
            assert time.monotonic() < deadline, "alignpipe serve did not become healthy in 180 s"
            try:
                with urllib.request.urlopen(health_url, timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.3)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def post_json(url: str, body: object, timeout: float = 60) -> tuple[int, dict]:
    """POSTs `body` as JSON (bytes are sent as they are); returns (status, decoded answer)."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
