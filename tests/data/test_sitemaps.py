"""Sitemap files parsed as XML (nothing expanded, nothing fetched) and inflated within a cap."""

from __future__ import annotations

import asyncio
import collections
import gzip
import os
import tracemalloc

import pytest

from alignpipe.config import load_config
from alignpipe.data.addresses import parse_networks
from alignpipe.data.crawl import crawl_host, host_of
from alignpipe.data.fetch import Fetcher, FetchPolicy
from alignpipe.data.sitemaps import (
    INFLATE_CHUNK_BYTES,
    MAX_SITEMAP_URLS,
    MAX_SITEMAPS,
    InflatedTooLarge,
    SitemapsRead,
    inflate,
    parse_sitemap,
    read_sitemaps,
)
from alignpipe.demo.serve import serve_folder
from tests.data.hostile_sitemaps import (
    IMAGE_NS,
    NS,
    billion_laughs,
    gzip_bomb,
    sitemapindex,
    urlset,
    with_doctype,
)

URL = "http://127.0.0.1:8000/sitemap.xml"


def parse(xml: str | bytes, max_bytes: int = 1_000_000, **kwargs):
    return parse_sitemap(URL, xml.encode() if isinstance(xml, str) else xml, max_bytes, **kwargs)


def test_character_references_are_decoded():
    sitemap = parse(urlset("http://a/p?x=1&amp;y=2", "http://a/caf&#xE9;", "  http://a/spaced\n "))
    assert (sitemap.outcome, sitemap.kind) == ("ok", "urlset")
    assert sitemap.locs == ("http://a/p?x=1&y=2", "http://a/café", "http://a/spaced")


def test_cdata_locs_are_read_as_written():
    sitemap = parse(urlset("<![CDATA[http://a/p?x=1&y=2]]>", "<![CDATA[ http://a/q ]]>"))
    assert sitemap.locs == ("http://a/p?x=1&y=2", "http://a/q")


@pytest.mark.parametrize(
    "root",
    [
        f"<urlset {NS}><url><loc>{{}}</loc></url></urlset>",
        "<urlset><url><loc>{}</loc></url></urlset>",  # no namespace
        '<s:urlset xmlns:s="http://www.sitemaps.org/schemas/sitemap/0.9"><s:url><s:loc>{}</s:loc></s:url></s:urlset>',
        '<urlset xmlns="https://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>{}</loc></url></urlset>',
    ],
)
def test_entries_in_the_roots_namespace_are_read(root):
    assert parse(root.format("http://a/p")).locs == ("http://a/p",)


def test_locs_outside_the_roots_entries_are_not_pages():
    xml = (
        f"<urlset {NS} {IMAGE_NS}><loc>http://a/stray</loc>"
        "<url><loc>http://a/page</loc><image:image><image:loc>http://a/i.png</image:loc></image:image></url>"
        '<url><loc xmlns="http://example.com/other">http://a/other-ns</loc></url></urlset>'
    )
    assert parse(xml).locs == ("http://a/page",)


def test_a_sitemap_index_lists_sitemaps():
    sitemap = parse(sitemapindex("http://a/s1.xml", "http://a/s2.xml.gz"))
    assert (sitemap.outcome, sitemap.kind, sitemap.locs) == (
        "ok",
        "sitemapindex",
        ("http://a/s1.xml", "http://a/s2.xml.gz"),
    )
    assert (
        parse(urlset("http://a/s1.xml").replace("urlset", "sitemapindex")).locs == ()
    )  # <url> is no index entry


def test_a_malformed_tail_keeps_the_urls_before_it():
    xml = urlset("http://a/1", "http://a/2", "http://a/3")
    sitemap = parse(xml[: xml.index("http://a/3") + 5])
    assert (sitemap.outcome, sitemap.locs) == ("malformed_sitemap", ("http://a/1", "http://a/2"))
    assert sitemap.error.startswith("not well-formed XML at line 5")
    broken = parse(xml.replace("</url>\n  <url><loc>http://a/3", "</url>\n  <url><<loc>http://a/3"))
    assert (broken.outcome, broken.locs) == ("malformed_sitemap", ("http://a/1", "http://a/2"))


def test_billion_laughs_is_refused_unexpanded():
    tracemalloc.start()
    try:
        sitemap = parse(billion_laughs("http://a/p").replace("{sitemaps}", "http://a"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (sitemap.outcome, sitemap.locs) == ("malformed_sitemap", ())
    assert sitemap.error == "declares entity 'lol0' (entities are refused, not expanded)"
    assert peak < 1_000_000


@pytest.mark.parametrize(
    "doctype, error",
    [
        ('[<!ENTITY ext SYSTEM "http://127.0.0.2/x">]', "declares entity 'ext'"),
        ('SYSTEM "http://127.0.0.2/sitemap.dtd"', "refers to external 'http://127.0.0.2/sitemap.dtd'"),
    ],
)
def test_external_entities_and_dtds_are_refused(doctype, error):
    sitemap = parse(with_doctype(urlset("http://a/p"), doctype))
    assert (sitemap.outcome, sitemap.locs) == ("malformed_sitemap", ())
    assert sitemap.error.startswith(error)


@pytest.mark.parametrize(
    "body", [b"<html><body><a href='http://a/p'>p</a></body></html>", b'<rss version="2.0"><channel/></rss>']
)
def test_other_xml_is_not_a_sitemap(body):
    sitemap = parse(body)
    assert (sitemap.outcome, sitemap.kind, sitemap.locs) == ("not_a_sitemap", "", ())
    assert sitemap.error.startswith("the root element is <")


def test_html_and_empty_bodies_are_malformed():
    assert parse(b"<!doctype html><html><p>Not found").outcome == "malformed_sitemap"
    assert parse(b"").outcome == "malformed_sitemap"


def test_urls_past_the_protocol_limit_are_counted_not_kept():
    sitemap = parse(urlset(*(f"http://a/{i}" for i in range(MAX_SITEMAP_URLS + 7))))
    assert (sitemap.outcome, len(sitemap.locs), sitemap.dropped) == ("ok", MAX_SITEMAP_URLS, 7)
    assert sitemap.locs[-1] == f"http://a/{MAX_SITEMAP_URLS - 1}"
    assert parse(urlset("http://a/1", "http://a/2", "http://a/3"), max_urls=2).dropped == 1


def test_gzipped_sitemaps_are_read_in_one_member_or_several():
    xml = urlset("http://a/1", "http://a/2").encode()
    assert parse(gzip.compress(xml)).locs == ("http://a/1", "http://a/2")
    middle = xml.index(b"<url>", xml.index(b"<url>") + 1)
    assert parse(gzip.compress(xml[:middle]) + gzip.compress(xml[middle:])).locs == (
        "http://a/1",
        "http://a/2",
    )


def test_a_cut_gzip_stream_keeps_the_urls_before_the_cut():
    urls = [f"http://a/{i}/{os.urandom(8).hex()}" for i in range(2000)]  # random: not all in the last 2 KB
    sitemap = parse(gzip.compress(urlset(*urls).encode())[:-2000])
    assert (sitemap.outcome, sitemap.error) == (
        "malformed_sitemap",
        "broken gzip stream: the gzip stream ends early",
    )
    assert 0 < len(sitemap.locs) < len(urls) and sitemap.locs == tuple(urls[: len(sitemap.locs)])


def test_a_gzip_bomb_is_read_up_to_the_cap_only():
    head = f'<?xml version="1.0"?>\n<urlset {NS}><url><loc>http://a/before</loc></url>'.encode()
    bomb = gzip_bomb(head, b"<url><loc>http://a/after</loc></url></urlset>", 128 << 20)
    parse(b"<urlset/>")  # the parser's first use loads modules: not this test's memory
    tracemalloc.start()
    try:
        sitemap = parse(bomb, max_bytes=20_000_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (sitemap.outcome, sitemap.locs) == ("too_large", ("http://a/before",))
    assert sitemap.error == "inflates to more than 20000000 bytes; the first 20000000 were read"
    assert peak < 1_000_000, f"{peak} bytes at the peak: the bomb was inflated whole"


@pytest.mark.parametrize("size", [0, 1, INFLATE_CHUNK_BYTES - 1, INFLATE_CHUNK_BYTES + 1, 200_000])
@pytest.mark.parametrize("chunk_bytes", [1, 1000, INFLATE_CHUNK_BYTES])
def test_inflate_yields_the_stream_in_small_pieces_up_to_the_cap(size, chunk_bytes):
    data = os.urandom(size // 2) + bytes(size - size // 2)  # half incompressible, half zeros
    body = gzip.compress(data[: size // 3]) + gzip.compress(data[size // 3 :])
    for cap in sorted({max(size - 1, 0), size, size + 1}):
        pieces: list[bytes] = []
        over = False
        try:
            for piece in inflate(body, cap, chunk_bytes):
                pieces.append(piece)
        except InflatedTooLarge:
            over = True
        assert all(0 < len(p) <= chunk_bytes for p in pieces)
        assert b"".join(pieces) == data[:cap]
        assert over == (cap < size), cap


def read(urls: list[str], max_bytes: int = 100_000) -> SitemapsRead:
    async def main() -> SitemapsRead:
        policy = FetchPolicy("alignpipe-test", allowed_networks=parse_networks(("127.0.0.1/32",)), retries=0)
        async with Fetcher(policy) as fetcher:
            return await read_sitemaps(fetcher, urls, max_bytes)

    return asyncio.run(main())


def test_indexes_are_followed_once_each_up_to_the_file_limit(make_site):
    listed = MAX_SITEMAPS + 5  # with the index: 6 over the limit
    files = {"index.xml": sitemapindex("index.xml", *(f"s{i}.xml" for i in range(listed)))}
    files |= {f"s{i}.xml": urlset(f"p{i}.html", "p0.html#top") for i in range(listed)}
    with serve_folder(make_site(files)) as base:
        sitemaps = read([base + "index.xml", base + "index.xml#again"])
    assert sitemaps.outcomes == collections.Counter(ok=MAX_SITEMAPS, max_sitemaps=6)
    assert sitemaps.page_urls == [f"{base}p{i}.html" for i in range(MAX_SITEMAPS - 1)]  # relative locs joined


def test_a_crawl_starts_from_the_guessed_sitemap_and_robots_sitemap_lines(make_site):
    files = {"index.html": "<p>seed</p>", "a.html": "<p>a</p>", "b.html": "<p>b</p>"}
    files["sitemap.xml"] = urlset("a.html")  # no Sitemap: line: /sitemap.xml is guessed
    with serve_folder(make_site(files)) as base:
        cfg = load_config(
            "local", "tiny", [f"scrape.seed_urls={base}", "scrape.allowed_networks=127.0.0.1/32"]
        )
        guessed = {r.url: (r.outcome, r.referrer) for r in crawl_host(host_of(base), [base], cfg.scrape)}
        files = {
            "robots.txt": f"User-agent: *\nSitemap: {base}b.xml.gz\n",
            "b.xml.gz": gzip.compress(urlset("b.html").encode()),
        }
        make_site(files)
        named = {r.url: (r.outcome, r.referrer) for r in crawl_host(host_of(base), [base], cfg.scrape)}
    assert guessed == {base: ("ok", ""), base + "a.html": ("ok", "sitemap")}
    assert named == {base: ("ok", ""), base + "b.html": ("ok", "sitemap")}  # robots.txt's line wins
