import asyncio
import http.server
import threading

import pytest

from alignpipe.data.addresses import is_allowed_address, parse_networks
from alignpipe.data.fetch import Fetched, Fetcher, FetchPolicy, parse_retry_after, robots_tags
from alignpipe.data.robots import RobotsCache, parse_robots
from alignpipe.demo.serve import serve_folder

UA = "alignpipe-test/1.0"
LOOPBACK = parse_networks(["127.0.0.1/32"])


def policy(**kw) -> FetchPolicy:
    base = dict(user_agent=UA, allowed_networks=LOOPBACK, retries=0, retry_backoff_s=0.01, deadline_s=5)
    return FetchPolicy(**(base | kw))


def get(url: str, max_bytes: int = 10_000, **kw) -> Fetched:
    async def main() -> Fetched:
        async with Fetcher(policy(**kw)) as fetcher:
            return await fetcher.get(url, max_bytes)

    return asyncio.run(main())


def robots_for(url: str, **kw):
    async def main():
        async with Fetcher(policy(**kw)) as fetcher:
            return await RobotsCache(fetcher, UA).rules(url)

    return asyncio.run(main())


@pytest.fixture
def error_server():
    """A real server answering every request with HTTP 503."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_error(503, "down for maintenance")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_fetch_outcomes(make_site, dead_url):
    site = make_site({"a.html": "<p>page</p>", "big.bin": b"x" * 1000, "dir/index.html": "d"})
    with serve_folder(site) as url:
        ok = get(url + "a.html", 100)
        assert (ok.outcome, ok.status, ok.content_type, ok.body) == ("ok", 200, "text/html", b"<p>page</p>")
        missing = get(url + "nope.png", 100)
        assert (missing.outcome, missing.status, missing.body) == ("http_404", 404, b"")
        assert get(url + "big.bin", 999).outcome == "too_large"
        assert get(url + "big.bin", 1000).outcome == "ok"
        redirected = get(url + "dir", 100)
        assert redirected.final_url == url + "dir/" and redirected.body == b"d"
        assert get(url + "a.html", allowed_networks=()).outcome == "forbidden_address"
    refused = get(dead_url, 100, retries=2)
    assert (refused.outcome, refused.tries) == ("unreachable", 3)
    assert "refused" in refused.error.lower() or "connect" in refused.error.lower()
    assert get("ftp://127.0.0.1/x", 100).outcome == "not_http"


@pytest.fixture
def redirect_server():
    """A real server redirecting every request to the `Location` set for its path; yields
    (base URL, {path: Location}, the paths requested)."""
    locations: dict[str, str] = {}
    requested: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            requested.append(self.path)
            self.send_response(302)
            self.send_header("Location", locations[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", locations, requested
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    "url, reason",
    [
        ("http://127.0.0.1:99999/x.jpg", "Port out of range"),
        ("http://127.0.0.1:http/x.jpg", "Port could not be cast"),
        ("http://[::1/x.jpg", "Invalid IPv6 URL"),
        ("http://bad host/", "' ' at character 10"),
        ("http://:80/x.jpg", "no host"),
    ],
)
def test_malformed_urls_are_named_and_never_retried(url, reason, redirect_server):
    fetched = get(url, retries=3, retry_backoff_s=5)  # a retry would make this test slow
    assert (fetched.outcome, fetched.tries, fetched.status) == ("url_malformed", 1, None)
    assert reason in fetched.error
    base, locations, requested = redirect_server
    locations["/moved"] = url
    redirected = get(base + "moved", retries=3, retry_backoff_s=5)
    assert (redirected.outcome, redirected.tries) == ("url_malformed", 1)
    assert redirected.error.startswith(f"redirect from {base}moved: ") and reason in redirected.error
    assert requested == ["/moved"]  # the server was asked once, the malformed target never


def test_addresses_public_private_and_allowed():
    assert is_allowed_address("8.8.8.8", ())
    for private in (
        "127.0.0.1",
        "10.1.2.3",
        "192.168.0.1",
        "169.254.169.254",
        "::1",
        "fe80::1",
        "100.64.0.1",
    ):
        assert not is_allowed_address(private, ()), private
    assert not is_allowed_address("::ffff:127.0.0.1", ())
    assert is_allowed_address("127.0.0.1", LOOPBACK) and not is_allowed_address("127.0.0.2", LOOPBACK)


def test_parse_robots_rules_wildcards_and_crawl_delay():
    rules = parse_robots("User-agent: *\nDisallow: /private/\nDisallow: /*.gif$\nCrawl-delay: 2\n", UA)
    assert rules.refusal("http://h/public/a.html") is None
    assert rules.refusal("http://h/private/a.png") == "robots_disallowed"
    assert rules.refusal("http://h/x/y.gif") == "robots_disallowed"
    assert rules.refusal("http://h/x/y.gif?v=1") is None
    assert rules.crawl_delay_s == 2.0
    rate = parse_robots("User-agent: *\nRequest-rate: 4/2\n", UA)
    assert rate.crawl_delay_s == 0.5
    other = parse_robots("User-agent: otherbot\nDisallow: /\n", UA)
    assert other.refusal("http://h/x") is None and other.crawl_delay_s == 0.0


def test_robots_missing_allows_all_and_server_error_disallows_all(make_site, error_server, dead_url):
    with serve_folder(make_site({"index.html": "x"})) as url:
        rules = robots_for(url + "index.html")
        assert rules.refusal(url + "anything") is None
    down = robots_for(error_server + "page.html", retries=1)
    assert down.refusal(error_server + "page.html") == "robots_unavailable"
    assert "503" in down.reason and "2 tries" in down.reason
    assert robots_for(dead_url).refusal(dead_url) == "robots_unavailable"


def test_x_robots_tag_and_retry_after_parsing():
    assert robots_tags(["noai, noimageai"], UA) == {"noai", "noimageai"}
    assert robots_tags(["otherbot: noai", "alignpipe-test: noindex"], UA) == {"noindex"}
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("garbage") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_legacy_ipv4_forms_are_literals():
    from alignpipe.data.addresses import literal_address

    assert literal_address("2130706434") == "127.0.0.2"
    assert literal_address("0x7f.1") == "127.0.0.1"
    assert literal_address("example.com") is None and literal_address("[::1]") == "::1"
    assert get("http://2130706434:9/x.png").outcome == "forbidden_address"
