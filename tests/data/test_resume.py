"""A killed scrape, rerun, finishes only what is missing: nothing lost, nothing duplicated,
and the previous output stays in place until the new one is complete."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import hashlib
import http.server
import io
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from PIL import Image

from alignpipe import fs
from alignpipe.config import ScrapeConfig, load_config
from alignpipe.data.records import ImageTextPair, read_tfrecords, shard_pattern
from alignpipe.data.scrape import run_scrape
from alignpipe.data.staging import RESUMABLE_FIELDS, fingerprint

NUM_IMAGES = 60


def site_files(root) -> None:
    imgs = []
    for i in range(NUM_IMAGES):
        out = io.BytesIO()
        Image.new("RGB", (40 + i, 30), (i * 4 % 256, 80, 160)).save(out, format="PNG")
        (root / f"img{i}.png").write_bytes(out.getvalue())
        imgs.append(f'<img src="img{i}.png" alt="picture number {i} of the set">')
    (root / "index.html").write_text("<html><body>" + "\n".join(imgs) + "</body></html>")


@contextlib.contextmanager
def slow_image_server(root, delay_s: float):
    """Serves `root`; each image answer waits `delay_s`. Yields (base URL, request counter)."""
    requests: collections.Counter[str] = collections.Counter()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            requests[self.path] += 1
            if self.path.endswith(".png"):
                time.sleep(delay_s)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the killed client
                super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", requests
    finally:
        server.shutdown()
        server.server_close()


def overrides(url: str, *extra: str) -> list[str]:
    return [
        f"scrape.seed_urls={url}",
        "scrape.allowed_networks=127.0.0.1/32",
        "scrape.unit_size=10",
        "scrape.per_host_connections=2",
        "scrape.use_sitemaps=false",
        *extra,
    ]


def pairs_of(out_dir: str) -> list[tuple[str, str, str]]:
    rows = []
    for path in fs.glob(shard_pattern(out_dir)):
        with open(path, "rb") as f:
            for record in read_tfrecords(f):
                pair = ImageTextPair.from_example(record)
                rows.append((pair.image_url, pair.text, hashlib.sha256(pair.image_bytes).hexdigest()))
    return sorted(rows)


def snapshot(out_dir: str) -> dict[str, bytes]:
    return {
        os.path.relpath(os.path.join(d, f), out_dir): open(os.path.join(d, f), "rb").read()
        for d, _, files in os.walk(out_dir)
        for f in files
        if "_staging" not in d
    }


def start_scrape(url: str, out_dir: str, *extra: str) -> subprocess.Popen:
    code = (
        "import sys; from alignpipe.config import load_config; from alignpipe.data.scrape import run_scrape;"
        f"run_scrape(load_config('local', 'tiny', {overrides(url, *extra)!r}), {out_dir!r})"
    )
    return subprocess.Popen([sys.executable, "-c", code], start_new_session=True)


def wait_for_done_units(out_dir: str, at_least: int, proc: subprocess.Popen, timeout_s: float = 120) -> int:
    done_dir = os.path.join(out_dir, "_staging", "_done")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = len(os.listdir(done_dir)) if os.path.isdir(done_dir) else 0
        if done >= at_least:
            return done
        assert proc.poll() is None, "the scrape ended before it could be killed"
        time.sleep(0.05)
    raise AssertionError(f"no {at_least} finished units within {timeout_s} s")


@pytest.mark.large
def test_killed_scrape_resumes_without_loss_or_duplicates(tmp_path):
    (tmp_path / "site").mkdir()
    site_files(tmp_path / "site")
    out = str(tmp_path / "out")
    with slow_image_server(tmp_path / "site", delay_s=0.15) as (url, requests):
        reference = str(tmp_path / "reference")
        run_scrape(load_config("local", "tiny", overrides(url)), reference)
        expected = pairs_of(reference)
        assert len(expected) == NUM_IMAGES

        # A good earlier output (other resize settings) that a killed run must not touch.
        run_scrape(load_config("local", "tiny", overrides(url, "scrape.resize_mode=center_crop")), out)
        before = snapshot(out)

        proc = start_scrape(url, out)
        done = wait_for_done_units(out, 2, proc)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        assert snapshot(out) == before, "the killed run changed the previous output"
        assert done < 6, "the scrape finished before it was killed"
        done_dir = os.path.join(out, "_staging", "_done")
        finished = sum(fs.read_json(os.path.join(done_dir, name))["pairs"] for name in os.listdir(done_dir))
        assert finished > 0

        requests.clear()
        report = run_scrape(load_config("local", "tiny", overrides(url)), out)
    assert pairs_of(out) == expected
    assert report.pairs_written == NUM_IMAGES == report.outcomes["image/ok"]
    refetched = sum(n for path, n in requests.items() if path.endswith(".png"))
    assert refetched <= NUM_IMAGES - finished, "finished units were downloaded again"
    assert not os.path.exists(os.path.join(out, "_staging"))


def another_value(value: object) -> object:
    """A different value of the same type (a new field of another type fails the test)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, tuple):
        return (*value, "x")
    raise AssertionError(f"no other value for {value!r}: teach another_value its type")


def test_every_scrape_setting_enters_the_fingerprint_but_the_resumable_ones():
    names = [field.name for field in dataclasses.fields(ScrapeConfig)]
    assert RESUMABLE_FIELDS <= set(names), f"not ScrapeConfig fields: {RESUMABLE_FIELDS - set(names)}"
    base = ScrapeConfig()
    for name in names:
        changed = dataclasses.replace(base, **{name: another_value(getattr(base, name))})
        resumes = fingerprint(changed) == fingerprint(base)
        assert resumes == (name in RESUMABLE_FIELDS), (
            f"{name}: a change {'resumes' if resumes else 'restarts'}"
        )
    assert fingerprint(base, "20240101T000000Z-a") != fingerprint(base, "20240108T000000Z-b")
