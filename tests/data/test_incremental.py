"""Incremental scrapes (`scrape.state_dir`): a rerun sends conditional requests and writes
pairs only for new or changed images; the state survives runs and is merged."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import gzip
import hashlib
import http.server
import io
import json
import os
import shutil
import threading

import numpy as np
import pytest
from PIL import Image

from alignpipe import fs
from alignpipe.config import load_config
from alignpipe.data import corpus
from alignpipe.data.addresses import parse_networks
from alignpipe.data.fetch import Fetcher, FetchPolicy, Validators
from alignpipe.data.records import ImageTextPair, read_tfrecords, shard_pattern
from alignpipe.data.scrape import run_scrape
from alignpipe.data.scrape_state import current_state, read_image_states
from alignpipe.errors import ConfigError, InputError


def png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


# etag/: the handler below answers If-None-Match; lm/: SimpleHTTPRequestHandler's own
# Last-Modified / If-Modified-Since; plain/: no validators at all.
SITE = {
    "index.html": """<img src="etag/a.png" alt="a picture served with an etag">
        <img src="lm/b.png" alt="a picture with a modification date">
        <img src="plain/c.png" alt="a picture without any validator">
        <a href="page2.html">more</a>""",
    "page2.html": """<img src="lm/e.png" alt="another dated picture here">
        <img src="etag/a.png" alt="a picture served with an etag">""",
    "etag/a.png": png(1),
    "lm/b.png": png(2),
    "plain/c.png": png(3),
    "lm/e.png": png(5),
}


class SiteHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the site folder, records each request's conditional headers."""

    requests: list[tuple[str, str | None, str | None]]

    def do_GET(self):
        self.requests.append(
            (self.path, self.headers.get("If-None-Match"), self.headers.get("If-Modified-Since"))
        )
        if self.path.startswith("/moved/"):
            self.send_response(301)
            self.send_header("Location", "/etag/" + self.path.removeprefix("/moved/"))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if not self.path.startswith(("/etag/", "/plain/")):
            return super().do_GET()
        path = os.path.join(self.directory, self.path.lstrip("/"))
        if not os.path.isfile(path):
            return self.send_error(404)
        with open(path, "rb") as f:
            body = f.read()
        etag = f'"{hashlib.sha256(body).hexdigest()[:16]}"'
        if self.path.startswith("/etag/") and self.headers.get("If-None-Match") == etag:
            self.send_response(304)
            self.send_header("ETag", etag)
            self.end_headers()
            return None
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        if self.path.startswith("/etag/"):
            self.send_header("ETag", etag)
        self.end_headers()
        self.wfile.write(body)
        return None

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve_site(root: str):
    """Yields (base URL, the requests received: (path, If-None-Match, If-Modified-Since))."""
    requests: list[tuple[str, str | None, str | None]] = []
    handler = type("Handler", (SiteHandler,), {"requests": requests})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=root))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", requests
    finally:
        server.shutdown()
        server.server_close()


def scrape(url: str, out_dir: str, state_dir: str = "", extra: list[str] = ()):
    overrides = [
        *extra,
        f"scrape.seed_urls={url}",
        "scrape.allowed_networks=127.0.0.1/32",
        "scrape.use_sitemaps=false",
        "scrape.retries=0",
        "scrape.processes=1",
        f"scrape.state_dir={state_dir}",
    ]
    return run_scrape(load_config("local", "tiny", overrides), out_dir)


def pairs_of(out_dir: str, url: str) -> list[tuple[str, str]]:
    pairs = []
    for path in fs.glob(shard_pattern(out_dir)):
        with open(path, "rb") as f:
            pairs += [ImageTextPair.from_example(r) for r in read_tfrecords(f)]
    return sorted((p.image_url.removeprefix(url), p.text) for p in pairs)


def manifest_counts(out_dir: str) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    for path in fs.glob(os.path.join(out_dir, "manifest-*.jsonl")):
        for line in fs.read_text(path).splitlines():
            m = json.loads(line)
            counts[f"{m['kind']}/{m['outcome']}"] += 1
    return counts


def image_requests(requests, url_path: str) -> list[tuple[str | None, str | None]]:
    return [(etag, since) for path, etag, since in requests if path == url_path]


def write_site(root, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())


@pytest.mark.large
def test_reruns_fetch_only_new_or_changed_images(tmp_path):
    root, state = tmp_path / "site", str(tmp_path / "state")
    write_site(root, SITE)
    with serve_site(str(root)) as (url, requests):
        first = scrape(url, str(tmp_path / "run1"), state)
        assert pairs_of(str(tmp_path / "run1"), url) == sorted(
            [
                ("etag/a.png", "a picture served with an etag"),
                ("lm/b.png", "a picture with a modification date"),
                ("plain/c.png", "a picture without any validator"),
                ("lm/e.png", "another dated picture here"),
            ]
        )
        assert first.pairs_written == 4
        assert all(etag is None and since is None for _, etag, since in requests)

        requests.clear()
        second = scrape(url, str(tmp_path / "run2"), state)
        assert pairs_of(str(tmp_path / "run2"), url) == []
        assert second.outcomes == {
            "image/duplicate_pair": 1,
            "image/not_modified": 3,
            "image/unchanged": 1,
            "page/ok": 2,
        }
        assert manifest_counts(str(tmp_path / "run2")) == second.outcomes
        assert (second.pairs_written, second.images_found) == (0, 5)
        [(etag, since)] = image_requests(requests, "/etag/a.png")
        assert etag and etag.startswith('"') and since is None
        [(etag, since)] = image_requests(requests, "/lm/b.png")
        assert etag is None and since and since.endswith("GMT")
        assert image_requests(requests, "/plain/c.png") == [(None, None)]

        # b changes (a later modification date, as a real edit gives), page2 drops e and
        # links a new page with a new image d and a new alt-text for a.
        (root / "lm/b.png").write_bytes(png(20))
        stat = os.stat(root / "lm/b.png")
        os.utime(root / "lm/b.png", (stat.st_atime, stat.st_mtime + 10))
        write_site(
            root,
            {
                "page2.html": '<a href="page3.html">on</a>',
                "page3.html": """<img src="etag/d.png" alt="a brand new picture today">
                    <img src="etag/a.png" alt="the etag picture seen again">""",
                "etag/d.png": png(4),
            },
        )
        requests.clear()
        third = scrape(url, str(tmp_path / "run3"), state)
        assert pairs_of(str(tmp_path / "run3"), url) == [
            ("etag/a.png", "the etag picture seen again"),
            ("etag/d.png", "a brand new picture today"),
            ("lm/b.png", "a picture with a modification date"),
        ]
        assert third.outcomes == {"image/ok": 3, "image/unchanged": 2, "page/ok": 3}
        assert manifest_counts(str(tmp_path / "run3")) == third.outcomes
        # a has an alt-text never written: asked for without validators, its bytes compared.
        assert image_requests(requests, "/etag/a.png") == [(None, None)]

    entries = {
        s.url.removeprefix(url): s for path in current_state(state).files for s in read_image_states(path)
    }
    assert sorted(entries) == ["etag/a.png", "etag/d.png", "lm/b.png", "lm/e.png", "plain/c.png"]
    assert entries["etag/a.png"].alts == ("a picture served with an etag", "the etag picture seen again")
    assert entries["lm/b.png"].sha256 == hashlib.sha256(png(20)).hexdigest()
    assert entries["lm/e.png"].last_modified  # not visited by the third run: kept
    assert sorted(os.listdir(state)) == sorted(["CURRENT.json", current_state(state).generation])


def test_without_state_dir_every_run_fetches_everything(tmp_path):
    root = tmp_path / "site"
    write_site(root, SITE)
    with serve_site(str(root)) as (url, requests):
        for run in ("run1", "run2"):
            report = scrape(url, str(tmp_path / run))
            assert report.outcomes == {"image/duplicate_pair": 1, "image/ok": 4, "page/ok": 2}
    assert all(etag is None and since is None for _, etag, since in requests)
    assert not os.path.exists(tmp_path / "state")


def test_corrupt_state_is_one_input_error_naming_the_file(tmp_path):
    root, state = tmp_path / "site", tmp_path / "state"
    write_site(root, {"index.html": '<img src="plain/c.png" alt="a picture without any validator">'})
    write_site(root, {"plain/c.png": png(3)})
    state.mkdir()
    (state / "CURRENT.json").write_text("{not json")
    with serve_site(str(root)) as (url, _):
        with pytest.raises(InputError, match=r"CURRENT\.json is not a state pointer"):
            scrape(url, str(tmp_path / "out"), str(state))

        (state / "g1").mkdir()
        (state / "g1" / "images-0.jsonl.gz").write_bytes(gzip.compress(b'{"url": "x"}\n'))
        (state / "CURRENT.json").write_text(json.dumps({"generation": "g1", "files": ["images-0.jsonl.gz"]}))
        with pytest.raises(InputError, match=r"state file .*images-0\.jsonl\.gz is corrupt at line 1"):
            scrape(url, str(tmp_path / "out"), str(state))


def test_validators_go_only_to_the_url_that_gave_them(tmp_path):
    write_site(tmp_path / "site", {"etag/a.png": png(1)})
    policy = FetchPolicy("test-bot/1.0", allowed_networks=parse_networks(("127.0.0.1/32",)), retries=0)

    async def fetch(url: str, validators: Validators | None):
        async with Fetcher(policy) as fetcher:
            return await fetcher.get(url, 10**6, validators=validators)

    with serve_site(str(tmp_path / "site")) as (base, requests):
        moved, final = base + "moved/a.png", base + "etag/a.png"
        first = asyncio.run(fetch(moved, None))
        assert (first.outcome, first.final_url) == ("ok", final) and first.etag
        again = asyncio.run(fetch(moved, Validators(final, first.etag)))
        assert (again.outcome, again.status, again.body, again.etag) == ("not_modified", 304, b"", first.etag)
        other = asyncio.run(fetch(moved, Validators(moved, first.etag)))  # not the answering URL's
        assert (other.outcome, other.body) == ("ok", png(1))
    assert [(path, etag) for path, etag, _ in requests] == [
        ("/moved/a.png", None),
        ("/etag/a.png", None),
        ("/moved/a.png", None),
        ("/etag/a.png", first.etag),
        ("/moved/a.png", first.etag),
        ("/etag/a.png", None),
    ]


@pytest.mark.large
def test_a_corpus_gathers_every_runs_new_pairs_for_the_filter(tmp_path):
    root, state, corpus_dir = tmp_path / "site", str(tmp_path / "state"), str(tmp_path / "corpus")
    write_site(root, SITE)

    def union(out_dir: str) -> list[tuple[str, str]]:
        return sorted(pair for folder in corpus.input_folders(out_dir) for pair in pairs_of(folder, url))

    with serve_site(str(root)) as (url, _):
        overrides = [f"scrape.corpus_dir={corpus_dir}"]
        scrape(url, str(tmp_path / "run1"), state, overrides)
        scrape(url, str(tmp_path / "run2"), state, overrides)  # nothing new: no snapshot
        write_site(root, {"page2.html": '<img src="etag/d.png" alt="a brand new picture today">'})
        write_site(root, {"etag/d.png": png(4)})
        third = scrape(url, str(tmp_path / "run3"), state, overrides)

    assert len(corpus.snapshots(corpus_dir)) == 2
    # adding the same output again (a retried task) finds the snapshot made for it
    assert (
        corpus.add_snapshot(str(tmp_path / "run3"), corpus_dir, third.pairs_written)
        == (corpus.snapshots(corpus_dir)[1])
    )
    assert len(corpus.snapshots(corpus_dir)) == 2
    assert corpus.input_folders(str(tmp_path / "run2")) == corpus.snapshots(corpus_dir)[:1]
    assert union(str(tmp_path / "run3")) == sorted(
        pairs_of(str(tmp_path / "run1"), url) + pairs_of(str(tmp_path / "run3"), url)
    )
    assert ("etag/d.png", "a brand new picture today") in union(str(tmp_path / "run3"))
    assert corpus.input_folders(str(tmp_path / "plain")) == [str(tmp_path / "plain")]

    shutil.rmtree(corpus.snapshots(corpus_dir)[0])
    with pytest.raises(InputError, match="is gone"):
        corpus.input_folders(str(tmp_path / "run3"))


def test_a_corpus_needs_a_state():
    with pytest.raises(ConfigError, match="scrape.corpus_dir"):
        load_config(overrides=["scrape.corpus_dir=/tmp/corpus"])
