import time

import pytest

from alignpipe.config import load_config
from alignpipe.data.crawl import check_seeds_reachable, crawl_host, host_of
from alignpipe.demo.serve import serve_folder
from alignpipe.errors import InputError

SITE = {
    "robots.txt": "User-agent: *\nDisallow: /private/\n",
    "index.html": """<a href="a.html">a</a> <a href="b.html#x">b</a> <a href="missing.html">gone</a>
        <a href="/private/p.html">private</a> <a href="http://127.0.0.2:9/x">away</a>
        <a href="mailto:me@example.com">mail</a> <a href="/files/notes.txt">notes</a>""",
    "a.html": '<a href="c.html">c</a> <a href="/">home</a>',
    "b.html": '<a href="a.html">a again</a>',
    "c.html": '<a href="d.html">d</a>',
    "d.html": "<p>deep</p>",
    "private/p.html": '<img src="secret.png" alt="secret">',
    "files/notes.txt": "plain text",
}


def scrape_config(url: str, *overrides: str):
    base = [f"scrape.seed_urls={url}", "scrape.allowed_networks=127.0.0.1/32", "scrape.use_sitemaps=false"]
    return load_config("local", "tiny", base + list(overrides)).scrape


def crawl(url: str, *overrides: str) -> dict[str, str]:
    events = list(crawl_host(host_of(url), [url], scrape_config(url, *overrides)))
    urls = [e.url for e in events]
    assert len(urls) == len(set(urls)), "every page URL gets exactly one outcome"
    return {e.url.removeprefix(url): e.outcome for e in events}


@pytest.fixture
def site_url(make_site):
    with serve_folder(make_site(SITE)) as url:
        yield url


def test_crawl_obeys_robots_stays_on_host_and_records_every_outcome(site_url):
    assert crawl(site_url) == {
        "": "ok",
        "a.html": "ok",
        "b.html": "ok",
        "missing.html": "http_404",
        "private/p.html": "robots_disallowed",
        "http://127.0.0.2:9/x": "off_host",
        "files/notes.txt": "non_page_link",
        "c.html": "ok",
        "d.html": "ok",
    }


def test_crawl_records_carry_images_referrer_and_depth(make_site):
    site = dict(SITE, **{"d.html": '<p>deep</p><img src="x.png" alt=" an  image ">'})
    with serve_folder(make_site(site)) as site_url:
        events = {e.url: e for e in crawl_host(host_of(site_url), [site_url], scrape_config(site_url))}
    d = events[site_url + "d.html"]
    assert (d.depth, d.referrer) == (3, site_url + "c.html")
    assert [(i.url, i.alt, i.page_url) for i in d.images] == [
        (site_url + "x.png", "an image", site_url + "d.html")
    ]
    assert events[site_url + "missing.html"].error.startswith("HTTP 404")


def test_max_depth_and_max_pages(site_url):
    shallow = crawl(site_url, "scrape.max_depth=1")
    assert shallow["c.html"] == "max_depth" and "d.html" not in shallow
    assert shallow["a.html"] == "ok"
    few = crawl(site_url, "scrape.max_pages=2", "scrape.per_host_connections=1")
    assert [k for k, v in few.items() if v == "ok"] == ["", "a.html"]
    assert few["b.html"] == "max_pages" and few["missing.html"] == "max_pages"


def test_links_to_other_hosts_are_not_followed(make_site):
    root = make_site({"d.html": "<p>other host</p>"})
    with serve_folder(root) as url:
        other = url.replace("127.0.0.1", "localhost")  # the same server under another host name
        with open(f"{root}/index.html", "w") as f:
            f.write(f'<a href="{other}d.html">x</a> <a href="d.html">same host</a>')
        assert crawl(url) == {"": "ok", other + "d.html": "off_host", "d.html": "ok"}
        allowed = f"scrape.allowed_hosts={host_of(url)},{host_of(other)}"
        assert crawl(url, allowed)[other + "d.html"] == "other_host"


def test_crawl_delay_is_respected(make_site):
    site = {
        "robots.txt": "User-agent: *\nCrawl-delay: 1\n",
        "index.html": '<a href="a.html">a</a>',
        "a.html": '<a href="b.html">b</a>',
        "b.html": "end",
    }
    with serve_folder(make_site(site)) as url:
        start = time.monotonic()
        assert set(crawl(url).values()) == {"ok"}
        assert time.monotonic() - start >= 2.0  # three fetches, two pauses


def test_check_seeds_reachable(site_url, dead_url):
    check_seeds_reachable(scrape_config(site_url))
    dead = dead_url
    with pytest.raises(InputError, match=rf"seed URL {dead} is unreachable: .*(refused|onnect)"):
        check_seeds_reachable(scrape_config(f"{site_url},{dead}", "scrape.retries=0"))
    with pytest.raises(InputError, match=r"seed URL .*nothing.html is unreachable: HTTP 404"):
        check_seeds_reachable(scrape_config(f"{site_url}nothing.html"))
    with pytest.raises(InputError, match="needs scrape.allowed_networks"):
        check_seeds_reachable(load_config("local", "tiny", [f"scrape.seed_urls={site_url}"]).scrape)
