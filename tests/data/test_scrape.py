import collections
import hashlib
import io
import json
import os
import time

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from alignpipe import fs
from alignpipe.config import load_config
from alignpipe.data.download import UnitDownload, Use
from alignpipe.data.records import COMPRESSION, ImageTextPair, shard_pattern
from alignpipe.data.scrape import run_scrape
from alignpipe.demo.serve import serve_folder
from alignpipe.errors import InputError


def png(width: int, height: int, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def jpeg(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, format="JPEG")
    return out.getvalue()


SITE = {
    "robots.txt": "User-agent: *\nDisallow: /private/\n",
    "index.html": """<html><body>
        <img src="img/a.png" alt="a  red circle on the left">
        <img src="/img/b.jpg" alt="two blue squares &amp; a star">
        <img src="img/c.png">
        <img src="img/c.png" alt="">
        <img src="img/missing.png" alt="a broken picture">
        <img src="/private/s.png" alt="a secret picture">
        <img src="http://127.0.0.2:9/x.png" alt="a picture on a refused address">
        <img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" alt="an inline pixel">
        <img src="img/fake.png" alt="a text file named png">
        <img src="img/huge.png" alt="a very large picture">
        <a href="page2.html">more</a> <a href="gone.html">gone</a>
        </body></html>""",
    "page2.html": """<base href="/img/"><img src="a.png" alt="a red circle on the left">
        <img src="a.png" alt="the same circle with another caption">""",
    "img/a.png": png(80, 60, seed=1),
    "img/b.jpg": jpeg(64, 96),
    "img/c.png": png(70, 70, seed=2),
    "img/fake.png": "this is not an image",
    "img/huge.png": png(200, 200, seed=3),
    "private/s.png": png(64, 64, seed=4),
}

EXPECTED_OUTCOMES = {
    "image/duplicate_pair": 1,
    "image/forbidden_address": 1,
    "image/http_404": 1,
    "image/no_alt": 2,
    "image/not_an_image": 1,
    "image/not_http": 1,
    "image/ok": 3,
    "image/robots_disallowed": 1,
    "image/too_large": 1,
    "page/http_404": 1,
    "page/ok": 2,
}
LOOPBACK = "scrape.allowed_networks=127.0.0.1/32"


def read_pairs(out_dir: str) -> list[ImageTextPair]:
    files = fs.glob(shard_pattern(out_dir))
    dataset = tf.data.TFRecordDataset(files, compression_type=COMPRESSION)
    return [ImageTextPair.from_example(r) for r in dataset.as_numpy_iterator()]


def read_manifest(out_dir: str) -> list[dict]:
    lines = []
    for path in fs.glob(os.path.join(out_dir, "manifest-*.jsonl")):
        lines += [json.loads(line) for line in fs.read_text(path).splitlines()]
    return lines


@pytest.mark.large
def test_scrape_writes_pairs_manifest_and_report_that_add_up(make_site, tmp_path):
    out = str(tmp_path / "scraped")
    with serve_folder(make_site(SITE)) as url:
        overrides = [f"scrape.seed_urls={url}", "scrape.max_image_bytes=20000", LOOPBACK, "scrape.retries=0"]
        overrides.append("scrape.resize_mode=no")  # the bytes are checked as they were served
        overrides += ["scrape.output_formats=tfrecord,webdataset,parquet"]
        report = run_scrape(load_config("local", "tiny", overrides), out)

        assert report.outcomes == EXPECTED_OUTCOMES
        assert (report.pages_crawled, report.pages_failed) == (2, 1)
        assert (report.images_found, report.pairs_written) == (12, 3)
        assert fs.read_json(os.path.join(out, "scrape_report.json")) == report.to_dict()
        assert not os.path.exists(os.path.join(out, "_staging"))

        pairs = sorted(read_pairs(out), key=lambda p: (p.image_url, p.text))
        assert [(p.image_url.removeprefix(url), p.text, p.page_url.removeprefix(url)) for p in pairs] == [
            ("img/a.png", "a red circle on the left", ""),
            ("img/a.png", "the same circle with another caption", "page2.html"),
            ("img/b.jpg", "two blue squares & a star", ""),
        ]
        a, _, b = pairs
        assert (a.image_format, a.width, a.height, a.image_bytes) == ("png", 80, 60, SITE["img/a.png"])
        assert (b.image_format, b.width, b.height) == ("jpeg", 64, 96)
        assert (b.original_width, b.original_height) == (64, 96)
        assert b.sha256 == hashlib.sha256(SITE["img/b.jpg"]).hexdigest()

        manifest = read_manifest(out)
        counted = collections.Counter(f"{m['kind']}/{m['outcome']}" for m in manifest)
        assert counted == EXPECTED_OUTCOMES
        private = [m for m in manifest if m["url"].endswith("/private/s.png")]
        assert [{k: v for k, v in m.items() if k != "error"} for m in private] == [
            {
                "kind": "image",
                "url": url + "private/s.png",
                "alt": "a secret picture",
                "page_url": url,
                "outcome": "robots_disallowed",
            }
        ]
        assert_exports_match(out, pairs)

        # A rerun with another unit size replaces the earlier output instead of mixing with it.
        overrides.append("scrape.unit_size=1")
        again = run_scrape(load_config("local", "tiny", overrides), out)
    assert again == report
    shards = fs.glob(shard_pattern(out))
    assert shards and all(path.endswith("-of-00008.tfrecord.gz") for path in shards)  # 8 image URLs
    assert len(read_pairs(out)) == 3


def assert_exports_match(out: str, pairs: list[ImageTextPair]) -> None:
    """The webdataset and parquet exports hold the same pairs, in img2dataset's layout."""
    import tarfile

    import pyarrow.parquet as pq

    captions, images = {}, {}
    for path in fs.glob(os.path.join(out, "webdataset", "*.tar")):
        with tarfile.open(path) as tar:
            for member in tar.getmembers():
                key, ext = member.name.split(".", 1)
                data = tar.extractfile(member).read()
                if ext == "txt":
                    captions[key] = data.decode()
                elif ext in ("png", "jpg"):
                    images[key] = data
    assert sorted(captions.values()) == sorted(p.text for p in pairs)
    assert sorted(images.values()) == sorted(p.image_bytes for p in pairs)
    table = pq.read_table(fs.glob(os.path.join(out, "parquet", "*.parquet")))
    assert sorted(table.column("caption").to_pylist()) == sorted(p.text for p in pairs)
    assert set(table.column("key").to_pylist()) == set(captions)
    # resize_mode no keeps PNG bytes: not a column named jpg (img2dataset's holds JPEGs only)
    assert "jpg" not in table.column_names
    assert sorted(table.column("image").to_pylist()) == sorted(p.image_bytes for p in pairs)
    assert sorted(table.column("format").to_pylist()) == sorted(p.image_format for p in pairs)


def test_run_scrape_without_seeds_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="scrape.seed_urls is empty"):
        run_scrape(load_config("local", "tiny"), str(tmp_path))


def test_run_scrape_with_unmatched_input_paths_is_an_input_error(tmp_path):
    overrides = ["scrape.source=url_list", f"scrape.input_paths={tmp_path}/none-*.parquet"]
    with pytest.raises(InputError, match="matches no file"):
        run_scrape(load_config("local", "tiny", overrides), str(tmp_path / "out"))


def test_image_downloads_obey_crawl_delay(make_site):
    site = {
        "robots.txt": "User-agent: *\nCrawl-delay: 1\n",
        "a.png": SITE["img/a.png"],
        "b.jpg": SITE["img/b.jpg"],
    }
    with serve_folder(make_site(site)) as url:
        cfg = load_config("local", "tiny", [f"scrape.seed_urls={url}", LOOPBACK, "scrape.retries=0"]).scrape
        pairs, lines = [], []
        images = [(url + name, [Use(f"alt {name}", url)]) for name in ("a.png", "b.jpg", "c.png")]
        start = time.monotonic()
        UnitDownload(cfg, None, pairs.append, lines.append).run(images, "test")
        elapsed = time.monotonic() - start
    assert sorted(line["outcome"] for line in lines) == ["http_404", "ok", "ok"]
    assert len(pairs) == 2
    assert 2.0 <= elapsed < 3.5  # three requests after robots.txt, at least a second apart
