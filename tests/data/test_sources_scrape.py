"""The url-list and Common Crawl sources through the whole scrape: the same pair schema,
outcomes that add up, resized images in img2dataset's modes."""

from __future__ import annotations

import collections
import io
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from alignpipe import fs
from alignpipe.config import load_config
from alignpipe.data.records import ImageTextPair, read_tfrecords, shard_pattern
from alignpipe.data.scrape import run_scrape
from alignpipe.demo.serve import serve_folder
from alignpipe.errors import InputError

LOOPBACK = "scrape.allowed_networks=127.0.0.1/32"


def png(width: int, height: int, alpha: bool = False) -> bytes:
    out = io.BytesIO()
    Image.new(
        "RGBA" if alpha else "RGB", (width, height), (10, 200, 30, 128) if alpha else (10, 200, 30)
    ).save(out, format="PNG")
    return out.getvalue()


def pairs_of(out_dir: str) -> list[ImageTextPair]:
    pairs = []
    for path in fs.glob(shard_pattern(out_dir)):
        with open(path, "rb") as f:
            pairs += [ImageTextPair.from_example(r) for r in read_tfrecords(f)]
    return sorted(pairs, key=lambda p: (p.image_url, p.text))


def outcomes(out_dir: str) -> collections.Counter:
    lines = []
    for path in fs.glob(os.path.join(out_dir, "manifest-*.jsonl")):
        lines += [json.loads(line) for line in fs.read_text(path).splitlines()]
    return collections.Counter(f"{m['kind']}/{m['outcome']}" for m in lines)


@pytest.mark.large
def test_url_list_scrape_resizes_and_counts_every_row(make_site, tmp_path):
    site = make_site(
        {"big.png": png(600, 300), "clear.png": png(400, 400, alpha=True), "small.png": png(40, 30)}
    )
    with serve_folder(site) as url:
        rows = {
            "URL": [
                url + "big.png",
                url + "clear.png",
                url + "small.png",
                url + "big.png",
                url + "gone.png",
                "",
            ],
            "TEXT": [
                "a wide green banner",
                "a clear square",
                "a tiny green tile",
                "a wide green banner",
                "x",
                "y",
            ],
        }
        pq.write_table(pa.table(rows), tmp_path / "list.parquet")
        overrides = ["scrape.source=url_list", f"scrape.input_paths={tmp_path}/*.parquet", LOOPBACK]
        overrides += ["scrape.resize_mode=keep_ratio", "scrape.image_size=100", "scrape.retries=0"]
        report = run_scrape(load_config("local", "tiny", overrides), str(tmp_path / "out"))
    expected = {"image/ok": 3, "image/duplicate_pair": 1, "image/http_404": 1, "image/url_malformed": 1}
    assert report.outcomes == expected == outcomes(str(tmp_path / "out"))
    big, clear, small = pairs_of(str(tmp_path / "out"))
    assert (big.width, big.height, big.original_width, big.original_height) == (200, 100, 600, 300)
    assert big.image_format == "jpeg" and Image.open(io.BytesIO(big.image_bytes)).size == (200, 100)
    assert (clear.width, clear.height, clear.image_format) == (100, 100, "jpeg")  # matted onto white
    assert small.image_bytes == png(40, 30) and small.page_url == ""  # already small: kept as is


def manifest_lines(out_dir: str) -> list[dict]:
    lines = []
    for path in fs.glob(os.path.join(out_dir, "manifest-*.jsonl")):
        lines += [json.loads(line) for line in fs.read_text(path).splitlines()]
    return lines


def snapshot(out_dir: str) -> dict[str, bytes]:
    """Every file of a scrape's output (its staging folder aside), by relative path."""
    return {
        os.path.relpath(os.path.join(d, f), out_dir): open(os.path.join(d, f), "rb").read()
        for d, _, files in os.walk(out_dir)
        for f in files
        if "_staging" not in d
    }


@pytest.mark.large
def test_malformed_urls_in_a_url_list_are_counted_and_the_rest_written(make_site, tmp_path):
    with serve_folder(make_site({"a.png": png(80, 60)})) as url:
        rows = [
            ("cap", "http://[::1"),
            ("a green field", url + "a.png"),
            ("port", "http://127.0.0.1:99999/x.jpg"),
            ("space", "http://bad host/x.jpg"),
            ("ctrl", "http://127.0.0.1/\x01.jpg"),
            ("ftp", "ftp://127.0.0.1/x.jpg"),
        ]
        (tmp_path / "list.tsv").write_text("".join(f"{alt}\t{link}\n" for alt, link in rows))
        overrides = ["scrape.source=url_list", f"scrape.input_paths={tmp_path}/list.tsv", LOOPBACK]
        report = run_scrape(
            load_config("local", "tiny", overrides + ["scrape.retries=3"]), str(tmp_path / "out")
        )
    assert report.outcomes == {"image/ok": 1, "image/url_malformed": 4, "image/not_http": 1}
    errors = {line["alt"]: line.get("error", "") for line in manifest_lines(str(tmp_path / "out"))}
    assert "Invalid IPv6 URL" in errors["cap"]
    assert "Port out of range" in errors["port"]  # named as such: no robots.txt asked, no retry
    assert "' ' at character" in errors["space"] and "'\\x01'" in errors["ctrl"]


@pytest.mark.large
def test_an_empty_input_is_an_error_that_keeps_the_previous_output(make_site, tmp_path):
    out = str(tmp_path / "out")
    with serve_folder(make_site({f"{i}.png": png(40 + i, 30) for i in range(3)})) as url:
        (tmp_path / "good.tsv").write_text("".join(f"picture {i}\t{url}{i}.png\n" for i in range(3)))
        overrides = ["scrape.source=url_list", f"scrape.input_paths={tmp_path}/good.tsv", LOOPBACK]
        assert run_scrape(load_config("local", "tiny", overrides), out).pairs_written == 3
    before = snapshot(out)
    for name, text in (("empty.tsv", ""), ("header-only.csv", "url,caption\n")):
        (tmp_path / name).write_text(text)
        overrides = ["scrape.source=url_list", f"scrape.input_paths={tmp_path}/{name}", LOOPBACK]
        with pytest.raises(InputError) as raised:
            run_scrape(load_config("local", "tiny", overrides), out)
        assert str(raised.value) == f"url list {tmp_path}/{name}: no rows (an empty file, or a header only)"
        assert snapshot(out) == before
    assert len(pairs_of(out)) == 3


def warc_response(writer: WARCWriter, url: str, body: bytes, content_type: str = "text/html") -> None:
    headers = StatusAndHeaders("200 OK", [("Content-Type", content_type)], protocol="HTTP/1.1")
    writer.write_record(
        writer.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=headers)
    )


@pytest.mark.large
def test_warc_scrape_downloads_the_images_of_archived_pages(make_site, tmp_path):
    site = make_site({"a.png": png(80, 60), "b.png": png(90, 60)})
    with serve_folder(site) as url:
        with open(tmp_path / "crawl.warc.gz", "wb") as f:
            writer = WARCWriter(f, gzip=True)
            page = f'<img src="{url}a.png" alt="a green field"><img src="{url}b.png" alt="">'
            warc_response(writer, "http://archived.example/p.html", page.encode())
            optout = f'<meta name="robots" content="noai"><img src="{url}b.png" alt="a green square">'
            warc_response(writer, "http://archived.example/q.html", optout.encode())
            warc_response(writer, "http://archived.example/r.pdf", b"%PDF-1.4", "application/pdf")
        overrides = ["scrape.source=warc", f"scrape.input_paths={tmp_path}/crawl.warc.gz", LOOPBACK]
        report = run_scrape(load_config("local", "tiny", overrides), str(tmp_path / "out"))
    assert report.outcomes == {
        "image/no_alt": 1,
        "image/ok": 1,
        "image/opted_out": 1,
        "page/not_html": 1,
        "page/ok": 2,
    }
    (pair,) = pairs_of(str(tmp_path / "out"))
    assert (pair.image_url, pair.text, pair.page_url) == (
        url + "a.png",
        "a green field",
        "http://archived.example/p.html",
    )
