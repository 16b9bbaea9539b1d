"""Generated malformed rows and URLs, a few thousand, through every source of the scrape: url
lists (TSV with and without a header, CSV, parquet, gzipped), WARC and WAT records, and pages
crawled from a real server on 127.0.0.1. Nothing crashes, every row, `<img>` and link ends under
exactly one outcome, and the counts add up.

Only 127.0.0.1:PORT of the test's server is ever contacted: the download keeps to the allowed
host (`image_hosts=allowed`), the crawl to its seed's host, so no generated name is resolved.
"""

from __future__ import annotations

import collections
import csv
import gzip
import html
import http.server
import io
import json
import random
import string
import threading

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from alignpipe.config import ScrapeConfig
from alignpipe.data.addresses import url_problem
from alignpipe.data.common_crawl import read_archive
from alignpipe.data.crawl import crawl_host
from alignpipe.data.download import UnitDownload, Use
from alignpipe.data.entries import ImageEntry
from alignpipe.data.html import parse_page
from alignpipe.data.url_lists import read_url_list

SEED = 20240601
ROWS_PER_LIST = 400
ARCHIVED_PAGES = 120
IMAGES_PER_PAGE = 8
JUNK = " \x00\x01\x1f\x7f\u00a0\u3000\u200b[]@%\\#?:<>\"'\u00e9\u2603/."
GARBAGE = string.ascii_letters + string.digits + string.punctuation + " \x00\x01\u00e9\u2603\u3000"


def png(shade: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (12, 9), (shade, 90, 160)).save(out, format="PNG")
    return out.getvalue()


IMAGES = {"/img/0.png": png(10), "/img/1.png": png(200)}  # /img/2.png and /img/3.png: 404


def malformed_url(rng: random.Random, base: str) -> str:
    """One URL of a randomly chosen kind: a good one of the site, or broken in one of many ways."""
    kind = rng.randrange(11)
    if kind == 0:
        return f"{base}img/{rng.randrange(4)}.png"
    if kind == 1:
        return rng.choice(
            ["http://[::1", "http://[::1/x.png", "http://[zz]/x", "http://[::1]x/", "https://]::1[/"]
        )
    if kind == 2:
        port = rng.choice(["99999", "65536", "-1", "abc", "0", "1e3", " 80", "\uff18\uff10", "8080:80"])
        return f"http://127.0.0.1:{port}/img/0.png"
    if kind == 3:  # a valid URL with one odd character put anywhere
        url = f"{base}img/{rng.randrange(4)}.png"
        at = rng.randrange(len(url) + 1)
        return url[:at] + rng.choice(JUNK) + url[at:]
    if kind == 4:
        return f"{base}img/" + "a" * rng.randint(8150, 9000) + ".png"
    if kind == 5:
        scheme = rng.choice(
            ["ftp://", "data:image/png;base64,", "mailto:", "javascript:", "file:///", "ws://"]
        )
        return scheme + rng.choice(["127.0.0.1/x.png", "", "AAAA"])
    if kind == 6:
        return rng.choice(
            ["http://", "http:///x.png", "http://:80/x", "http://@/x", "http://./x", "https://?q", "http:"]
        )
    if kind == 7:
        host = rng.choice(
            ["\u2603", "xn--", "a\u200db", "-", "..", "a" * 64, "\u00e9" * 70, "%41", "a_b", "ex ample"]
        )
        return f"http://{host}.example/x.png"
    if kind == 8:
        return rng.choice(["", " ", "\u3000", "  \u00a0 "])
    if kind == 9:
        return "".join(rng.choice(GARBAGE) for _ in range(rng.randint(1, 40)))
    return rng.choice(["img/0.png", "/img/1.png", "//127.0.0.1/x.png", "?q", "#f", "..", "./", "htp://x/"])


class FuzzSite(http.server.BaseHTTPRequestHandler):
    """Serves `IMAGES` and the HTML pages in `pages`; counts the paths asked for."""

    pages: dict[str, bytes] = {}
    requested: collections.Counter = collections.Counter()

    def do_GET(self):
        FuzzSite.requested[self.path] += 1
        body = IMAGES.get(self.path) or self.pages.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/png" if self.path in IMAGES else "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site():
    """(base URL, host:port) of a real server on 127.0.0.1."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FuzzSite)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host = f"127.0.0.1:{server.server_address[1]}"
    yield f"http://{host}/", host
    server.shutdown()
    server.server_close()


def scrape_config(host: str) -> ScrapeConfig:
    return ScrapeConfig(
        seed_urls=(f"http://{host}/",),
        allowed_hosts=(host,),
        image_hosts="allowed",
        allowed_networks=("127.0.0.1/32",),
        use_sitemaps=False,
        max_depth=1,
        retries=0,
        request_deadline_s=10,
    )


def write_lists(folder, rng: random.Random, base: str) -> dict[str, int]:
    """Writes url lists of generated rows in every supported layout; returns {path: rows}."""
    rows = {}

    def urls() -> list[str]:
        return [malformed_url(rng, base) for _ in range(ROWS_PER_LIST)]

    tsv = ["url\tcaption"] + [f"{_tsv_cell(u)}\trow {i}" for i, u in enumerate(urls())]
    for name in ("list.tsv", "list.tsv.gz"):
        data = "\n".join(tsv).encode()
        (folder / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
        rows[str(folder / name)] = ROWS_PER_LIST
    # CC3M's layout, no header; its first URL is broken
    cc3m = ["row 0\thttp://[::1"] + [f"row {i}\t{_tsv_cell(u)}" for i, u in enumerate(urls()[1:], 1)]
    (folder / "cc3m.tsv").write_text("\n".join(cc3m) + "\n")
    rows[str(folder / "cc3m.tsv")] = ROWS_PER_LIST
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["caption", "url"])
    writer.writerows([f"row {i}", u] for i, u in enumerate(urls()))
    (folder / "list.csv").write_text(buffer.getvalue())
    rows[str(folder / "list.csv")] = ROWS_PER_LIST
    cells = [None if rng.random() < 0.05 else u for u in urls()]  # parquet nulls too
    pq.write_table(
        pa.table({"URL": cells, "TEXT": [f"row {i}" for i in range(len(cells))]}), folder / "laion.parquet"
    )
    rows[str(folder / "laion.parquet")] = ROWS_PER_LIST
    return rows


def _tsv_cell(url: str) -> str:
    return url.replace("\t", "").replace("\n", "").replace("\r", "")  # TSV fields hold none


def write_archive(path, rng: random.Random, base: str) -> dict[str, int]:
    """A WARC file of HTML responses and WAT envelopes with generated `<img>`s and links;
    returns {page URL: the number of its images}."""
    images_of = {}
    with open(path, "wb") as f:
        writer = WARCWriter(f, gzip=True)
        for number in range(ARCHIVED_PAGES):
            page = f"http://archived.example/{number}.html" + rng.choice(["", "#top"])
            if number % 10 == 0:  # archived under a URL that is itself malformed
                page = rng.choice([f"http://[::1/{number}.html#top", f"http://h:99999/{number}.html"])
            sources = [malformed_url(rng, base) for _ in range(IMAGES_PER_PAGE)]
            sources = [
                s for s in sources if s.strip() and s.strip("\x00")
            ]  # an <img> without src has no image
            if number % 3:
                imgs = "".join(
                    f'<img src="{html.escape(s)}" alt="picture {i}">' for i, s in enumerate(sources)
                )
                links = "".join(f'<a href="{html.escape(malformed_url(rng, base))}">x</a>' for _ in range(3))
                http_headers = StatusAndHeaders(
                    "200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.1"
                )
                payload = io.BytesIO(f"<html><body>{imgs}{links}</body></html>".encode())
                record = writer.create_warc_record(
                    page, "response", payload=payload, http_headers=http_headers
                )
            else:  # a WAT envelope; its URLs may hold lone surrogates, as JSON can
                sources = [s + rng.choice(["", "\ud800", "\udfff"]) for s in sources]
                links = [
                    {"path": "IMG@/src", "url": s, "alt": f"picture {i}\udc80"} for i, s in enumerate(sources)
                ]
                record = writer.create_warc_record(
                    page,
                    "metadata",
                    payload=io.BytesIO(wat_envelope(page, links)),
                    warc_content_type="application/json",
                )
            writer.write_record(record)
            images_of[page.partition("#")[0]] = len(sources)
    return images_of


def wat_envelope(page: str, links: list[dict]) -> bytes:
    response = {
        "Response-Message": {"Status": "200", "Reason": "OK"},
        "Headers": {"Content-Type": "text/html"},
        "HTML-Metadata": {"Links": links},
    }
    envelope = {
        "WARC-Header-Metadata": {"WARC-Type": "response", "WARC-Target-URI": page},
        "Payload-Metadata": {"HTTP-Response-Metadata": response},
    }
    return json.dumps({"Envelope": envelope}).encode()


def download(entries: list[ImageEntry], cfg: ScrapeConfig) -> tuple[list[dict], collections.Counter, int]:
    """Every entry's use through one `UnitDownload`: (manifest lines, outcome counts, pairs)."""
    uses: dict[str, list[Use]] = collections.defaultdict(list)
    for entry in entries:
        uses[entry.url].append(Use(entry.alt, entry.page_url))
    lines, pairs = [], []
    counts = UnitDownload(cfg, None, pairs.append, lines.append).run(list(uses.items()), "fuzz")
    return lines, counts, len(pairs)


def check_outcomes(lines: list[dict], counts: collections.Counter, rows: int) -> None:
    """One manifest line per row, its outcome the one `url_problem` names when it names one."""
    assert len(lines) == rows == sum(counts.values())
    assert collections.Counter(f"image/{line['outcome']}" for line in lines) == counts
    for line in lines:
        problem = url_problem(line["url"])
        if problem is not None:
            assert line["outcome"] == problem.outcome, line
        else:
            assert line["outcome"] not in ("url_malformed", "not_http"), line
    for outcome in ("ok", "url_malformed", "not_http", "off_host", "http_404"):
        assert counts[f"image/{outcome}"] > 0, f"no row ended as {outcome}: the fuzz misses a case"


def test_generated_url_list_rows_each_end_in_one_outcome(tmp_path, site):
    base, host = site
    rows = write_lists(tmp_path, random.Random(SEED), base)
    entries = []
    for path, expected in rows.items():
        read = list(read_url_list(path))
        assert len(read) == expected, path
        assert [e.alt for e in read] == [f"row {i}" for i in range(expected)], path
        entries += read
    lines, counts, pairs = download(entries, scrape_config(host))
    check_outcomes(lines, counts, sum(rows.values()))
    assert pairs == counts["image/ok"]


def test_generated_archive_records_keep_every_image_and_each_ends_in_one_outcome(tmp_path, site):
    base, host = site
    images_of = write_archive(tmp_path / "fuzz.warc.gz", random.Random(SEED + 1), base)
    pages = list(read_archive(str(tmp_path / "fuzz.warc.gz")))
    assert {page.url: len(page.images) for page in pages} == images_of
    assert all(page.outcome == "ok" for page in pages)
    entries = [image for page in pages for image in page.images]
    for entry in entries:
        entry.url.encode("utf-8")  # no lone surrogate left: every later step can encode it
        entry.alt.encode("utf-8")
    lines, counts, _ = download(entries, scrape_config(host))
    check_outcomes(lines, counts, sum(images_of.values()))


def test_generated_links_of_crawled_pages_each_end_in_one_outcome(site):
    base, host = site
    rng = random.Random(SEED + 2)
    pages = {}
    for path in ("/", "/next.html"):
        links = [malformed_url(rng, base) for _ in range(250)] + [f"{base}next.html"]
        imgs = "".join(f'<img src="{html.escape(malformed_url(rng, base))}" alt="p">' for _ in range(40))
        hrefs = "".join(f'<a href="{html.escape(link)}">x</a>' for link in links)
        pages[path] = f"<html><body>{imgs}{hrefs}</body></html>".encode()
    FuzzSite.pages = pages
    records = list(crawl_host(host, [base], scrape_config(host)))
    urls = [record.url for record in records]
    assert len(urls) == len(set(urls)), "a page URL has more than one record"
    parsed = {path: parse_page(body, base.rstrip("/") + path) for path, body in pages.items()}
    assert set(urls) == {base} | {link for page in parsed.values() for link in page.links}
    fetched = {record.url: record for record in records if record.outcome == "ok"}
    assert set(fetched) == {base, f"{base}next.html"}
    for path, page in parsed.items():
        assert len(fetched[base.rstrip("/") + path].images) == len(page.images)
    outcomes = collections.Counter(record.outcome for record in records)
    for record in records:
        problem = url_problem(record.url)
        if problem is not None:
            assert record.outcome == problem.outcome, record
        else:
            assert record.outcome not in ("url_malformed", "not_http"), record
    assert outcomes["url_malformed"] > 0 and outcomes["off_host"] > 0
