"""`run_scrape` against a hostile site: every hazard ends in its named outcome, nothing hangs.

The site (`hostile_server.py`) is built from the tables below: each `<img>` and `<a>` of each
page is one row `(src or href as written, ..., expected outcome)`; a second seed host serves
hostile sitemaps, with its own tables (`hostile_sitemaps.py`). One scrape runs per module;
each test checks one part of the contract on its outputs (and on what the scrape logged):

- `manifest-*.jsonl`: a line per page URL met and per `<img>` entry, with its outcome;
- `pairs-*.tfrecord.gz`: `tf.train.Example`s of the `ok` entries;
- `scrape_report.json`: counts that add up with both.

Choices the contract leaves open, as these tests read them:
- Content-Type is not trusted either way: PNG bytes labelled text/html are `ok`, HTML bytes
  labelled image/png are `not_an_image`; TIFF and SVG (no jpeg/png/gif/webp/bmp magic) too.
- `scrape.max_redirects=5` allows five redirects: a five-hop chain is `ok`, six hops are not.
- robots.txt: the rule with the longest path pattern wins (RFC 9309 2.2.2), so
  `Disallow: /private/*.png$` (15 octets) beats `Allow: /private/ok*` (12) for /private/ok.png.
- `not_html` is checked on an extensionless URL: a link ending in e.g. `.json` may be judged
  by its extension and never fetched.
- A page that redirects to the forbidden address may be refused as `forbidden_address` or,
  since 127.0.0.2 is not an allowed page host either, as `off_host`; neither may contact it.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import glob
import hashlib
import html
import io
import json
import logging
import os
import threading
import time
import urllib.parse

import pytest
import tensorflow as tf
from PIL import Image

from alignpipe.config import Config, load_config
from alignpipe.data.scrape import run_scrape
from tests.data.hostile_server import HostileSite, Page, hostile_site
from tests.data.hostile_sitemaps import SITEMAP_FAULTS, SITEMAP_PAGES, SITEMAPS

pytestmark = pytest.mark.large

SCRAPE_LIMIT_S = 120.0
OVERRIDES = [
    "scrape.seed_urls={main}/index.html,{sitemaps}/index.html",
    "scrape.allowed_networks=127.0.0.1/32",  # 127.0.0.2 stays forbidden
    "scrape.request_deadline_s=2",
    "scrape.read_timeout_s=1",
    "scrape.retries=2",
    "scrape.retry_backoff_s=0.05",
    "scrape.max_retry_after_s=3",
    "scrape.max_image_bytes=200000",
    "scrape.resize_mode=no",  # the downloaded bytes are checked as they were served
    "scrape.max_image_pixels=4000000",
    "scrape.max_redirects=5",
    "scrape.max_depth=3",  # /depth/4.html is one link too deep
    "scrape.max_page_bytes=100000",  # /huge.html is 180 KB, /bomb.xml.gz inflates to 64 MB
    "scrape.use_sitemaps=true",  # main has none (its /sitemap.xml is a 404); sitemaps has hostile ones
]
EITHER = frozenset  # an outcome row that accepts any of a few outcomes

# index.html's <img>s: (src as written, alt attribute as written or None for none, outcome).
INDEX_IMAGES = [
    ("img/photo.jpg", "a photo of red noise", "ok"),
    ("/img/chart.png", "a chart  with\n    two lines", "ok"),
    ("img/anim.gif", "an animated gif of static", "ok"),
    ("img/pic.webp", "a webp picture of snow", "ok"),
    ("img/icon.bmp", "a bitmap icon &amp; its border", "ok"),
    ("img/mislabelled.png", "a png served as text/html", "ok"),
    ("redirect/good-1.png", "a picture two redirects away", "ok"),
    ("hops/5/0.png", "a picture five redirects away", "ok"),
    ("img/retry-429-once.png", "a picture behind one 429", "ok"),
    ("img/retry-503-once.png", "a picture behind one 503", "ok"),
    ("{flaky}/img/pic.png", "a picture on a host whose robots.txt fails once", "ok"),
    ("private/secret.png", "a disallowed png", "robots_disallowed"),
    ("private/ok.png", "a png where the longer disallow rule wins", "robots_disallowed"),
    ("private/ok.jpg", "a jpeg only the allow rule matches", "ok"),
    ("private/photo.jpg", "a jpeg under private", "ok"),
    ("private/pic.png.jpg", "a jpeg whose name holds .png", "ok"),
    ("private/open/pic.png", "a png where the longer allow rule wins", "ok"),
    ("{flaky}/blocked/pic.png", "a picture the flaky robots.txt disallows", "robots_disallowed"),
    ("{down}/img/pic.png", "a picture on a host whose robots.txt is down", "robots_unavailable"),
    ("img/no-alt-1.png", None, "no_alt"),
    ("img/no-alt-2.png", "", "no_alt"),
    ("img/no-alt-3.png", " \t ", "no_alt"),
    ("data:image/gif;base64,R0lGODlhAQABAAAAACw=", "an inline pixel", "not_http"),
    ("ftp://127.0.0.1:{port}/img/photo.jpg", "a picture over ftp", "not_http"),
    ("http://127.0.0.1:99999/img/photo.jpg", "a picture behind port 99999", "url_malformed"),
    ("http://[::1/img/photo.jpg", "a picture behind a broken IPv6 literal", "url_malformed"),
    ("http://bad host/img/photo.jpg", "a picture on a host with a space", "url_malformed"),
    ("img/noai-header.png", "a picture marked noai", "opted_out"),
    ("img/noimageai-header.png", "a picture marked noimageai", "opted_out"),
    ("{forbidden}/direct.png", "a picture on a forbidden address", "forbidden_address"),
    ("http://2130706434:{port}/decimal.png", "127.0.0.2 written as one number", "forbidden_address"),
    ("redirect/to-forbidden.png", "a picture redirected to a forbidden address", "forbidden_address"),
    ("redirect/loop-a.png", "a picture in a redirect loop", "too_many_redirects"),
    ("hops/6/0.png", "a picture six redirects away", "too_many_redirects"),
    ("img/missing.png", "a picture that is not there", "http_404"),
    ("img/busy-forever.png", "a picture behind 503s forever", "http_503"),
    ("img/retry-after-too-long.png", "a picture behind a long Retry-After", "http_429"),
    ("img/closed-mid-body.png", "a picture cut off mid-body", "unreachable"),
    ("img/reset.png", "a picture whose connection is reset", "unreachable"),
    ("img/empty-reply.png", "a picture with an empty reply", "unreachable"),
    ("img/slow-drip.png", "a picture sent one byte at a time", "timeout"),
    ("img/stall.png", "a picture that stalls after 100 bytes", "timeout"),
    ("img/too-large-length.png", "a picture too large by its length", "too_large"),
    ("img/too-large-chunked.png", "a picture too large in chunks", "too_large"),
    ("img/bomb.png", "a 30000 x 30000 decompression bomb", "too_many_pixels"),
    ("img/truncated.jpg", "a jpeg cut in half", "truncated"),
    ("img/truncated.png", "a png cut in half", "truncated"),
    ("img/html-as.png", "a page labelled png", "not_an_image"),
    ("img/text-as.jpg", "a text labelled jpeg", "not_an_image"),
    ("img/picture.tiff", "a tiff picture", "not_an_image"),
    ("img/drawing.svg", "an svg drawing", "not_an_image"),
]
# index.html's <a>s: (href as written, outcome of the page URL; None: met before, no line of its own).
INDEX_LINKS = [
    ("page2.html", "ok"),
    ("cp1252-header.html", "ok"),
    ("cp1252-meta.html", "ok"),
    ("noai-page.html", "ok"),
    ("redirect/page.html", "ok"),
    ("depth/1.html", "ok"),
    ("retry-429-once.html", "ok"),
    ("redirect/loop-a.html", "too_many_redirects"),
    ("hops/6/0.html", "too_many_redirects"),
    ("redirect/to-forbidden.html", EITHER({"forbidden_address", "off_host"})),
    ("{forbidden}/direct.html", "off_host"),
    ("slow-drip.html", "timeout"),
    ("gone.html", "http_404"),
    ("busy-forever.html", "http_503"),
    ("closed-mid-body.html", "unreachable"),
    ("huge.html", "too_large"),
    ("feed", "not_html"),  # JSON behind an extensionless URL
    ("members/index.html", "robots_disallowed"),
    ("http://127.0.0.1:99999/index.html", "url_malformed"),
    ("http://[::1/index.html", "url_malformed"),
]
CP1252_HEADER_ALT = "L’été au café coûte 5 €"
CP1252_META_ALT = "Crème brûlée – 3 € l’unité"


@dataclasses.dataclass(frozen=True)
class SitePage:
    images: list  # (src, alt or None, outcome or None for "never met")
    links: list = dataclasses.field(default_factory=list)  # (href, page outcome or None)
    head: str = ""
    content_type: str = "text/html; charset=utf-8"
    encoding: str = "utf-8"


SITE = {
    "/index.html": SitePage(INDEX_IMAGES, INDEX_LINKS),
    "/page2.html": SitePage(
        [
            ("/img/photo.jpg", "a photo of red noise", "duplicate_pair"),  # the same pair as on index
            ("/img/chart.png", "the same chart, another caption", "ok"),
        ],
        [("index.html", None), ("page2.html#top", None)],
    ),
    "/cp1252-header.html": SitePage(
        [("img/cafe-header.png", CP1252_HEADER_ALT, "ok")],
        content_type="text/html; charset=windows-1252",
        encoding="cp1252",
    ),
    "/cp1252-meta.html": SitePage(
        [("img/cafe-meta.png", CP1252_META_ALT, "ok")],
        head='<meta charset="windows-1252">',
        content_type="text/html",
        encoding="cp1252",
    ),
    "/noai-page.html": SitePage(
        [
            ("img/on-noai-page.png", "a picture on a noai page", "opted_out"),
            ("img/anim.gif", "a gif on a noai page", "opted_out"),  # index.html's use of it stays ok
        ],
        head='<meta name="robots" content="noai">',
    ),
    "/pages/moved/final.html": SitePage([("pic.png", "a picture beside a moved page", "ok")]),
    "/members/index.html": SitePage([("/img/photo.jpg", "members only", None)]),
    "/depth/1.html": SitePage([], [("2.html", "ok")]),
    "/depth/2.html": SitePage([], [("3.html", "ok")]),
    "/depth/3.html": SitePage([], [("4.html", "max_depth")]),
    "/depth/4.html": SitePage([("/img/photo.jpg", "too deep to be seen", None)]),
}
# Where a redirected image's bytes come from; the side servers all serve main's chart.
REDIRECTED = {"/redirect/good-1.png": "/img/chain-target.png", "/hops/5/0.png": "/hops/5/5.png"}
SIDE_SERVER_PICTURE = "/img/chart.png"
IMAGE_FORMATS = {"JPEG": "jpeg", "PNG": "png", "GIF": "gif", "WEBP": "webp", "BMP": "bmp"}


def site_pages() -> dict[str, Page]:
    pages = {}
    for path, page in SITE.items():
        imgs = [
            f'<img src="{src}"' + ("" if alt is None else f' alt="{alt}"') + ">"
            for src, alt, _ in page.images
        ]
        links = [f'<a href="{href}">{href}</a>' for href, _ in page.links]
        body = f"<head>{page.head}</head><body>\n" + "\n".join(imgs + links) + "\n</body>"
        pages[path] = Page(body, page.content_type, page.encoding)
    return pages


def expected_images(site: HostileSite) -> dict[str, list[str]]:
    """Image URL -> sorted outcomes of its manifest lines."""
    out = collections.defaultdict(list)
    for path, page in SITE.items():
        for src, _, outcome in page.images:
            if outcome is not None:
                out[resolve(site, path, src)].append(outcome)
    return {url: sorted(outcomes) for url, outcomes in out.items()}


def expected_pages(site: HostileSite) -> dict[str, str | frozenset]:
    out = {site.url("{main}/index.html"): "ok"}
    for path, page in SITE.items():
        out |= {resolve(site, path, href): outcome for href, outcome in page.links if outcome is not None}
    return out | {
        site.url("{sitemaps}" + path): outcome for path, outcome in SITEMAP_PAGES.items() if outcome
    }


def expected_pairs(site: HostileSite) -> dict[str, tuple[bytes, str, str | None]]:
    """Normalised alt -> (image bytes, image URL, page URL) of every `ok` row.

    The page URL is None where the same pair is also on another page (either page may be kept).
    """
    pages_of = collections.defaultdict(list)
    for path, page in SITE.items():
        for src, alt, outcome in page.images:
            if outcome is not None and alt:
                pages_of[resolve(site, path, src), " ".join(html.unescape(alt).split())].append(path)
    out = {}
    for path, page in SITE.items():
        for src, alt, outcome in page.images:
            if outcome == "ok":
                url, alt = resolve(site, path, src), " ".join(html.unescape(alt).split())
                parts = urllib.parse.urlsplit(url)
                served = SIDE_SERVER_PICTURE if parts.port != int(site.bases["port"]) else parts.path
                page_url = site.url("{main}" + path) if len(pages_of[url, alt]) == 1 else None
                out[alt] = (site.files[REDIRECTED.get(served, served)], url, page_url)
    return out


def resolve(site: HostileSite, page_path: str, ref: str) -> str:
    try:
        return urllib.parse.urldefrag(urllib.parse.urljoin(site.url("{main}" + page_path), site.url(ref))).url
    except ValueError:  # "http://[::1/...": kept as written, to be counted
        return ref


@dataclasses.dataclass(frozen=True)
class Scraped:
    site: HostileSite
    cfg: Config
    out_dir: str
    seconds: float
    logged: list[str]  # the messages of the `alignpipe` logger, INFO and above

    def manifest(self, kind: str) -> list[dict]:
        lines = []
        for path in sorted(glob.glob(os.path.join(self.out_dir, "manifest-*.jsonl"))):
            with open(path, encoding="utf-8") as f:
                lines += [json.loads(line) for line in f if line.strip()]
        return [line for line in lines if line["kind"] == kind]

    def records(self) -> list[dict[str, object]]:
        files = sorted(glob.glob(os.path.join(self.out_dir, "pairs-*.tfrecord.gz")))
        out = []
        for data in tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator():
            features = tf.train.Example.FromString(data).features.feature
            out.append({k: (v.bytes_list.value or v.int64_list.value)[0] for k, v in features.items()})
        return out

    def report(self) -> dict:
        with open(os.path.join(self.out_dir, "scrape_report.json"), encoding="utf-8") as f:
            return json.load(f)


@pytest.fixture(scope="module")
def scraped(tmp_path_factory) -> Scraped:
    """One scrape of the hostile site, in a thread that must end within `SCRAPE_LIMIT_S`."""
    out_dir = str(tmp_path_factory.mktemp("hostile") / "scraped")
    with hostile_site(site_pages()) as site:
        cfg = load_config("local", "tiny", [site.url(o) for o in OVERRIDES])
        failure: list[BaseException] = []

        def scrape() -> None:
            try:
                run_scrape(cfg, out_dir)
            except BaseException as e:  # reported below, in the test's thread
                failure.append(e)

        thread = threading.Thread(target=scrape, name="run_scrape", daemon=True)
        start = time.monotonic()
        with logged_messages("alignpipe") as logged:
            thread.start()
            thread.join(SCRAPE_LIMIT_S)
        seconds = time.monotonic() - start
        if thread.is_alive():
            pytest.fail(f"run_scrape still running after {SCRAPE_LIMIT_S:.0f} s: a hazard hung it")
    if failure:
        raise AssertionError("run_scrape crashed on the hostile site") from failure[0]
    return Scraped(site, cfg, out_dir, seconds, logged)


@contextlib.contextmanager
def logged_messages(name: str):
    """The messages a logger gives at INFO and above while the block runs (from any thread)."""
    messages: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = logging.getLogger(name)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_every_image_entry_ends_in_its_outcome(scraped):
    lines = scraped.manifest("image")
    assert all({"url", "page_url", "alt", "outcome"} <= line.keys() for line in lines)
    actual = collections.defaultdict(list)
    for line in lines:
        actual[line["url"]].append(line["outcome"])
    assert {url: sorted(outcomes) for url, outcomes in actual.items()} == expected_images(scraped.site)


def test_every_page_url_met_ends_in_its_outcome(scraped):
    lines = scraped.manifest("page")
    urls = [line["url"] for line in lines]
    assert len(urls) == len(set(urls)), "a page URL has more than one manifest line"
    actual = {line["url"]: line["outcome"] for line in lines}
    expected = expected_pages(scraped.site)
    for url, outcome in expected.items():  # rows that accept any of a few outcomes
        if isinstance(outcome, frozenset) and actual.get(url) in outcome:
            expected[url] = actual[url]
    assert actual == expected


def test_good_images_are_written_intact(scraped):
    expected = expected_pairs(scraped.site)
    records = {r["text"].decode(): r for r in scraped.records()}
    assert sorted(r["text"].decode() for r in scraped.records()) == sorted(expected)
    for alt, (data, url, page_url) in expected.items():
        record = records[alt]
        image = Image.open(io.BytesIO(data))
        assert record["image/encoded"] == data, alt
        assert record["image/sha256"].decode() == hashlib.sha256(data).hexdigest(), alt
        assert record["image/format"].decode() == IMAGE_FORMATS[image.format], alt
        sizes = [record[f"image/{k}"] for k in ("width", "height", "original_width", "original_height")]
        assert sizes == [*image.size, *image.size], alt  # resize_mode "no" keeps the bytes
        if urllib.parse.urlsplit(url).path not in REDIRECTED:
            assert record["image/url"].decode() == url, alt
        if page_url and "/moved/" not in url:  # a redirected page: the link, or where it led
            assert record["page/url"].decode() == page_url, alt


def test_alt_texts_of_cp1252_pages_are_decoded(scraped):
    alts = {line["url"].rsplit("/", 1)[1]: line["alt"] for line in scraped.manifest("image")}
    assert alts["cafe-header.png"] == CP1252_HEADER_ALT  # charset from the Content-Type header
    assert alts["cafe-meta.png"] == CP1252_META_ALT  # charset from <meta charset> only
    texts = {r["text"].decode() for r in scraped.records()}
    assert {CP1252_HEADER_ALT, CP1252_META_ALT} <= texts


def test_report_counts_add_up(scraped):
    report = scraped.report()
    images, pages = scraped.manifest("image"), scraped.manifest("page")
    counted = collections.Counter(f"{line['kind']}/{line['outcome']}" for line in images + pages)
    assert report["outcomes"] == dict(counted)
    image_total = sum(n for key, n in report["outcomes"].items() if key.startswith("image/"))
    assert image_total == len(images) == report["images_found"]
    assert report["outcomes"].get("image/ok", 0) == report["pairs_written"] == len(scraped.records())
    assert report["outcomes"].get("page/ok", 0) == report["pages_crawled"]


def test_retries_follow_retry_after_and_stop_at_the_limits(scraped):
    log = scraped.site.logs["main"]
    for path in ("/img/retry-429-once.png", "/img/retry-503-once.png", "/retry-429-once.html"):
        times = log.times(path)
        assert len(times) == 2, path
        assert times[1] - times[0] >= 0.9, f"{path}: Retry-After: 1 not waited for"
    retries = scraped.cfg.scrape.retries
    assert len(log.times("/img/busy-forever.png")) == len(log.times("/busy-forever.html")) == 1 + retries
    assert len(log.times("/img/retry-after-too-long.png")) == 1  # Retry-After: 10 > max_retry_after_s
    assert len(scraped.site.logs["flaky"].times("/robots.txt")) >= 2  # the 503 was retried


def test_robots_and_depth_limits_keep_urls_unfetched(scraped):
    main, flaky, down = (scraped.site.logs[name] for name in ("main", "flaky", "down"))
    for path in ("/private/secret.png", "/private/ok.png", "/members/index.html", "/depth/4.html"):
        assert main.times(path) == [], path
    assert flaky.times("/blocked/pic.png") == []
    assert down.times("/img/pic.png") == []


def test_nothing_contacts_the_forbidden_address(scraped):
    log = scraped.site.logs["forbidden"]
    if log is None:
        pytest.skip("127.0.0.2 cannot be bound here, so contact with it cannot be observed")
    assert (log.connections, log.hits) == (0, {})


def test_scrape_is_bounded_and_identifies_itself(scraped):
    assert scraped.seconds < SCRAPE_LIMIT_S
    for name, log in scraped.site.logs.items():
        if log is not None and log.hits:
            assert log.user_agents() == {scraped.cfg.scrape.user_agent}, name
    assert scraped.site.server_errors() == []


def test_sitemaps_are_read_once_each_and_never_past_the_cap(scraped):
    log = scraped.site.logs["sitemaps"]
    for path in [*SITEMAPS, "/bomb.xml.gz"]:  # index loops and a self-listing index included
        assert len(log.times(path)) == 1, path
    for path, outcome in SITEMAP_PAGES.items():  # after the bomb's cap, in refused or broken files
        if outcome is None:
            assert log.times(urllib.parse.urlsplit(path).path) == [], path


def test_sitemap_faults_are_logged_with_their_outcome(scraped):
    for path, outcome in SITEMAP_FAULTS.items():
        said = [
            m for m in scraped.logged if m.startswith(f"sitemap {scraped.site.url('{sitemaps}' + path)}: ")
        ]
        assert len(said) == 1 and said[0].split(": ")[1].startswith(f"{outcome},"), (path, said)
    files = collections.Counter(SITEMAP_FAULTS.values())
    files["ok"] = len(SITEMAPS) + 1 - len(SITEMAP_FAULTS)  # + 1: the bomb, not in SITEMAPS
    by_outcome = ", ".join(f"{n} {outcome}" for outcome, n in sorted(files.items()))
    page_urls = sum(outcome is not None for outcome in SITEMAP_PAGES.values())  # the seed is listed too
    host = urllib.parse.urlsplit(scraped.site.bases["sitemaps"]).netloc
    assert f"sitemaps of {host}: {page_urls} page URLs; files by outcome: {by_outcome}" in scraped.logged
