import gzip
import io
import json
import random

import pytest
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from alignpipe.data.common_crawl import read_archive
from alignpipe.data.entries import ImageEntry, PageRecord
from alignpipe.errors import InputError

SHOP = "https://shop.example.com/caf%C3%A9/index.html"
CP1252_PAGE = (
    b'<!DOCTYPE html><html><head><meta charset="windows-1252"><title>Caf\xe9</title></head><body>'
    b'<img src="img/cr\xe8me.jpg" alt="  Caf\xe9   cr\xe8me \x93br\xfbl\xe9e\x94 ">'
    b'<img data-src="/lazy.webp" src="placeholder.gif" alt="">'
    b'<img alt="no source"></body></html>'
)
NOAI_PAGE = (
    b'<?xml version="1.0" encoding="utf-8"?><html xmlns="http://www.w3.org/1999/xhtml"><head>'
    b'<meta name="robots" content="NoAI, noimageai" /></head>'
    b'<body><img src="art.png" alt="my art" /></body></html>'
)


class Archive:
    """A WARC / WAT file written with warcio as Common Crawl writes them (one gzip member a record)."""

    def __init__(self, compress: bool = True) -> None:
        self.buffer = io.BytesIO()
        self.writer = WARCWriter(self.buffer, gzip=compress, warc_version="1.0")
        self.offsets: list[int] = []
        self.add(self.writer.create_warcinfo_record("CC-MAIN-test.warc.gz", {"isPartOf": "CC-MAIN-2024-22"}))

    def add(self, record) -> None:
        self.offsets.append(self.buffer.tell())
        self.writer.write_record(record)

    def request(self, uri: str) -> None:
        host = uri.split("/")[2]
        http = StatusAndHeaders(
            "GET / HTTP/1.1", [("Host", host), ("User-Agent", "CCBot/2.0")], is_http_request=True
        )
        self.add(self.writer.create_warc_record(uri, "request", payload=io.BytesIO(b""), http_headers=http))

    def response(
        self, uri: str, body: bytes, status: str = "200 OK", headers=(("Content-Type", "text/html"),)
    ):
        http_headers = [
            ("Date", "Sat, 18 May 2024 01:58:10 GMT"),
            *headers,
            ("Content-Length", str(len(body))),
        ]
        http = StatusAndHeaders(status, http_headers, protocol="HTTP/1.1")
        warc_headers = {"WARC-IP-Address": "192.0.2.7", "WARC-Identified-Payload-Type": "text/html"}
        self.add(
            self.writer.create_warc_record(
                uri, "response", payload=io.BytesIO(body), http_headers=http, warc_headers_dict=warc_headers
            )
        )

    def metadata(self, uri: str, payload: bytes, content_type: str) -> None:
        record = self.writer.create_warc_record(
            uri, "metadata", payload=io.BytesIO(payload), warc_content_type=content_type
        )
        self.add(record)

    def save(self, path) -> str:
        path.write_bytes(self.buffer.getvalue())
        return str(path)


def warc_file(compress: bool = True) -> Archive:
    archive = Archive(compress)
    archive.request(SHOP)
    archive.response(SHOP, CP1252_PAGE)
    archive.metadata(
        SHOP, b"fetchTimeMs: 129\r\ncharset-detected: windows-1252\r\n", "application/warc-fields"
    )
    archive.response(
        "https://art.example/gallery#top", NOAI_PAGE, headers=[("Content-Type", "application/xhtml+xml")]
    )
    archive.response(
        "https://news.example/story",
        b'<img src="https://cdn.example/p.jpg" alt="press photo">',
        headers=[("Content-Type", "text/html; charset=utf-8"), ("X-Robots-Tag", "otherbot: noimageai")],
    )
    archive.response("https://news.example/gone", b"<h1>Not here</h1>", status="404 Not Found")
    archive.response("https://news.example/moved", b"", status="301 Moved Permanently")
    archive.response(
        "https://cdn.example/p.jpg", b"\xff\xd8\xff\xe0", headers=[("Content-Type", "image/jpeg")]
    )
    return archive


WARC_PAGES = [
    PageRecord(
        SHOP,
        "ok",
        images=(
            ImageEntry("https://shop.example.com/caf%C3%A9/img/cr%C3%A8me.jpg", "Café crème “brûlée”", SHOP),
            ImageEntry("https://shop.example.com/lazy.webp", "", SHOP),
        ),
    ),
    PageRecord(
        "https://art.example/gallery",
        "ok",
        images=(ImageEntry("https://art.example/art.png", "my art", "https://art.example/gallery", True),),
    ),
    PageRecord(
        "https://news.example/story",
        "ok",
        images=(ImageEntry("https://cdn.example/p.jpg", "press photo", "https://news.example/story", True),),
    ),
    PageRecord("https://news.example/gone", "http_404", error="404 Not Found"),
    PageRecord("https://news.example/moved", "http_301", error="301 Moved Permanently"),
    PageRecord("https://cdn.example/p.jpg", "not_html", error="image/jpeg"),
]


@pytest.mark.parametrize("compress", [True, False], ids=["warc.gz", "warc"])
def test_warc_responses_give_pages_with_images_and_opt_outs(tmp_path, compress):
    path = warc_file(compress).save(tmp_path / ("part.warc.gz" if compress else "part.warc"))
    assert list(read_archive(path)) == WARC_PAGES


def test_warc_body_over_the_limit_is_too_large(tmp_path):
    path = warc_file().save(tmp_path / "part.warc.gz")
    first = next(read_archive(path, max_page_bytes=100))
    assert first == PageRecord(SHOP, "too_large", error="body longer than 100 bytes")


def wat_envelope(uri: str, warc_type: str = "response", response: dict | None = None) -> bytes:
    payload = {"Actual-Content-Type": f"application/http; msgtype={warc_type}", "Trailing-Slop-Length": "4"}
    if response is not None:
        payload["HTTP-Response-Metadata"] = response
    envelope = {
        "Container": {
            "Filename": "CC-MAIN-20240518-00001.warc.gz",
            "Compressed": True,
            "Offset": "1044",
            "Gzip-Metadata": {"Deflate-Length": "457", "Header-Length": "10", "Footer-Length": "8"},
        },
        "Envelope": {
            "Format": "WARC",
            "WARC-Header-Length": "578",
            "Block-Digest": "sha1:YHKQUSBOS4CLYFEKQDVGJ457OAPD6IJO",
            "Actual-Content-Length": "43428",
            "WARC-Header-Metadata": {
                "WARC-Type": warc_type,
                "WARC-Date": "2024-05-18T01:58:10Z",
                "WARC-Target-URI": uri,
                "Content-Type": f"application/http; msgtype={warc_type}",
            },
            "Payload-Metadata": payload,
        },
    }
    return json.dumps(envelope).encode()


def http_metadata(status: str, reason: str, headers: dict, html: dict | None = None) -> dict:
    response = {
        "Response-Message": {"Version": "HTTP/1.1", "Status": status, "Reason": reason},
        "Headers-Length": "198",
        "Headers": {"Date": "Sat, 18 May 2024 01:58:10 GMT", **headers},
        "Entity-Length": "4951",
        "Entity-Digest": "sha1:ZA4S2ROKJQBBZUB7HNCIF4B343CJJLNW",
    }
    if html is not None:
        response["HTML-Metadata"] = html
    return response


def wat_file() -> Archive:
    blog = "https://blog.example/2024/05/post.html"
    head = {
        "Title": "A post",
        "Base": "https://cdn.example.org/base/",
        "Metas": [
            {"name": "viewport", "content": "width=device-width"},
            {"name": "robots", "content": "index"},
        ],
        "Link": [{"path": "LINK@/href", "rel": "stylesheet", "url": "/style.css"}],
    }
    links = [
        {"path": "A@/href", "url": "/about", "text": "About"},
        {"path": "IMG@/src", "url": "https://img.example/cat.jpg", "alt": "  A   cat\nasleep "},
        {"path": "IMG@/src", "url": "thumbs/dog pic.png"},
        {"path": "IMG@/data-href", "url": "/ignored.png"},
        {"path": "IMG@/src", "url": " "},
    ]
    html = {"Content-Type": "text/html; charset=UTF-8"}
    x_robots = {"content-type": "text/html", "X-Robots-Tag": ["noindex", "noimageai"]}
    art_img = [{"path": "IMG@/src", "url": "/a.png", "alt": "art"}]
    noai = {"Metas": [{"name": "ROBOTS", "content": "noai"}]}
    envelopes = [
        (blog, "request", None),
        (blog, "response", http_metadata("200", "OK", html, {"Head": head, "Links": links})),
        ("https://art.example/", "response", http_metadata("200", "OK", x_robots, {"Links": art_img})),
        (
            "https://meta.example/p",
            "response",
            http_metadata("200", "OK", html, {"Head": noai, "Links": [{"path": "IMG@/src", "url": "x.gif"}]}),
        ),
        ("http://blog.example/old", "response", http_metadata("301", "Moved Permanently", {})),
        (
            "https://blog.example/paper.pdf",
            "response",
            http_metadata("200", "OK", {"Content-Type": "application/pdf"}),
        ),
        (blog, "metadata", None),
    ]
    archive = Archive()
    for uri, warc_type, response in envelopes:
        archive.metadata(uri, wat_envelope(uri, warc_type, response), "application/json")
    return archive


def test_wat_envelopes_of_responses_give_pages_with_img_links(tmp_path):
    path = wat_file().save(tmp_path / "part.warc.wat.gz")
    blog = "https://blog.example/2024/05/post.html"
    assert list(read_archive(path)) == [
        PageRecord(
            blog,
            "ok",
            images=(
                ImageEntry("https://img.example/cat.jpg", "A cat asleep", blog),
                ImageEntry("https://cdn.example.org/base/thumbs/dog%20pic.png", "", blog),
            ),
        ),
        PageRecord(
            "https://art.example/",
            "ok",
            images=(ImageEntry("https://art.example/a.png", "art", "https://art.example/", True),),
        ),
        PageRecord(
            "https://meta.example/p",
            "ok",
            images=(ImageEntry("https://meta.example/x.gif", "", "https://meta.example/p", True),),
        ),
        PageRecord("http://blog.example/old", "http_301", error="HTTP 301 Moved Permanently"),
        PageRecord("https://blog.example/paper.pdf", "not_html", error="application/pdf"),
    ]


def test_malformed_image_urls_are_kept_to_be_counted_and_lone_surrogates_replaced(tmp_path):
    page = "https://p.example/"
    archive = Archive()
    archive.response(page, b'<img src="http://[::1" alt="a"><img src="http://h:99999/x.png" alt="b">')
    links = [
        {"path": "IMG@/src", "url": "http://[::1", "alt": "c"},
        {"path": "IMG@/src", "url": "/x\ud800.png", "alt": "d\udc00e"},
    ]
    wat = http_metadata("200", "OK", {"Content-Type": "text/html"}, {"Links": links})
    # json.dumps escapes the lone surrogates as "\\ud800", as a WAT file may hold them
    archive.metadata(page, wat_envelope(page, "response", wat), "application/json")
    warc_page, wat_page = read_archive(archive.save(tmp_path / "odd.warc.gz"))
    assert [(e.url, e.alt) for e in warc_page.images] == [("http://[::1", "a"), ("http://h:99999/x.png", "b")]
    assert [(e.url, e.alt) for e in wat_page.images] == [
        ("http://[::1", "c"),
        ("https://p.example/x%EF%BF%BD.png", "d\ufffde"),
    ]


def read_until_error(path: str) -> tuple[list[PageRecord], str]:
    pages = []
    with pytest.raises(InputError) as raised:
        for page in read_archive(path):
            pages.append(page)
    return pages, str(raised.value)


def test_truncated_gzip_archive_yields_the_pages_before_the_cut_then_names_file_and_offset(tmp_path):
    archive = warc_file()
    data = archive.buffer.getvalue()
    cut_record = 4  # warcinfo, request, response, metadata, [response cut in two]
    start = archive.offsets[cut_record]
    path = tmp_path / "cut.warc.gz"
    path.write_bytes(data[: (start + archive.offsets[cut_record + 1]) // 2])
    pages, error = read_until_error(str(path))
    assert pages == WARC_PAGES[:1]
    assert error.startswith(
        f"archive {path}: truncated or corrupt at record {cut_record} (byte offset {start}): "
    )


@pytest.mark.parametrize(
    "cut_at, reason",
    [
        ("end", "the record ends 36 bytes before its Content-Length"),  # 40 cut = 36 block + 4 newline bytes
        ("start", "Invalid WARC record, first line: WAR"),
    ],
)
def test_truncated_plain_archive(tmp_path, cut_at, reason):
    archive = warc_file(compress=False)
    start = archive.offsets[5]  # the 404 response
    cut = archive.offsets[6] - 40 if cut_at == "end" else start + 3
    path = tmp_path / "cut.warc"
    path.write_bytes(archive.buffer.getvalue()[:cut])
    pages, error = read_until_error(str(path))
    assert pages == WARC_PAGES[:2]
    assert error.startswith(
        f"archive {path}: truncated or corrupt at record 5 (byte offset {start}): {reason}"
    )


def test_whole_file_gzip_is_refused_with_the_fix(tmp_path):
    path = tmp_path / "whole.warc.gz"
    path.write_bytes(gzip.compress(warc_file(compress=False).buffer.getvalue()))
    pages, error = read_until_error(str(path))
    assert pages == []  # record 0 is the warcinfo
    assert error == (
        f"archive {path}: truncated or corrupt at record 1: one gzip stream holds many records; "
        "archives must be gzipped record by record (`warcio recompress`)"
    )


def test_gzip_member_cut_inside_its_header_is_not_a_clean_end(tmp_path):
    archive = warc_file()
    path = tmp_path / "cut.warc.gz"
    path.write_bytes(archive.buffer.getvalue()[: archive.offsets[5] + 12])
    pages, error = read_until_error(str(path))
    assert pages == WARC_PAGES[:2]
    assert error == (
        f"archive {path}: truncated or corrupt at record 5 (byte offset {archive.offsets[5]}): "
        "the last 12 bytes are not a whole record"
    )


def test_wat_record_that_is_not_json_is_corrupt(tmp_path):
    archive = Archive()
    archive.metadata("https://x.example/", b'{"Envelope": {', "application/json")
    path = archive.save(tmp_path / "bad.wat.gz")
    pages, error = read_until_error(path)
    assert pages == []
    assert error.startswith(
        f"archive {path}: truncated or corrupt at record 1 (byte offset {archive.offsets[1]}): "
    )
    assert "not a WAT JSON envelope" in error


def test_missing_file_and_not_an_archive(tmp_path):
    missing = str(tmp_path / "nope.warc.gz")
    assert read_until_error(missing) == ([], f"archive {missing}: no such file")
    text = tmp_path / "notes.warc"
    text.write_text("just some notes\n")
    pages, error = read_until_error(str(text))
    assert error == (
        f"archive {text}: truncated or corrupt at record 0 (byte offset 0): "
        "no WARC or ARC header where a record should start (not a WARC / WAT file?)"
    )


@pytest.mark.parametrize("name", ["noise.warc", "noise.warc.gz"])
def test_binary_garbage_is_named_without_echoing_it(tmp_path, name):
    noise = bytes(random.Random(1).randrange(256) for _ in range(4000))
    path = tmp_path / name
    path.write_bytes((b"\x1f\x8b" if name.endswith(".gz") else b"") + noise)
    pages, error = read_until_error(str(path))
    assert pages == []
    reason = error.removeprefix(f"archive {path}: truncated or corrupt at record 0 (byte offset 0): ")
    assert reason != error and len(reason) < 120
    assert reason.isascii() and reason.isprintable()


def test_archive_without_any_http_response_is_an_error(tmp_path):
    archive = Archive()  # its warcinfo record only
    path = archive.save(tmp_path / "info-only.warc.gz")
    assert read_until_error(path) == ([], f"archive {path}: no archived HTTP response in 1 records")
