import http.server
import threading
import urllib.request

import pytest

from alignpipe.data.download import fetch
from alignpipe.data.robots import load_robots, parse_robots
from alignpipe.data.serve import serve_folder

UA = "alignpipe-test/1.0"


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


def test_serve_folder_serves_files_and_404s(make_site):
    site = make_site({"index.html": "<p>hi</p>"})
    with serve_folder(site) as url:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/")
        assert urllib.request.urlopen(url + "index.html").read() == b"<p>hi</p>"
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(url + "missing.html")
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "index.html", timeout=2)  # stopped


def test_fetch_outcomes(make_site, dead_url):
    site = make_site({"a.html": "<p>page</p>", "big.bin": b"x" * 1000, "dir/index.html": "d"})
    with serve_folder(site) as url:
        ok = fetch(url + "a.html", UA, 5, 100)
        assert (ok.outcome, ok.status, ok.content_type, ok.body) == ("ok", 200, "text/html", b"<p>page</p>")
        missing = fetch(url + "nope.png", UA, 5, 100)
        assert (missing.outcome, missing.status, missing.body) == ("http_404", 404, b"")
        assert fetch(url + "big.bin", UA, 5, 999).outcome == "too_large"
        assert fetch(url + "big.bin", UA, 5, 1000).outcome == "ok"
        redirected = fetch(url + "dir", UA, 5, 100)
        assert redirected.final_url == url + "dir/" and redirected.body == b"d"
    refused = fetch(dead_url, UA, 5, 100)
    assert refused.outcome == "unreachable" and "refused" in refused.error.lower()
    assert fetch("http://bad host/", UA, 5, 100).outcome == "unreachable"


def test_parse_robots_rules_and_crawl_delay():
    rules = parse_robots("User-agent: *\nDisallow: /private/\nCrawl-delay: 2\n", UA)
    assert rules.can_fetch("http://h/public/a.html")
    assert not rules.can_fetch("http://h/private/a.png")
    assert rules.crawl_delay_s == 2.0
    rate = parse_robots("User-agent: *\nRequest-rate: 4/2\n", UA)
    assert rate.crawl_delay_s == 0.5
    other = parse_robots("User-agent: otherbot\nDisallow: /\n", UA)
    assert other.can_fetch("http://h/x") and other.crawl_delay_s == 0.0


def test_load_robots_missing_allows_all_and_server_error_disallows_all(make_site, error_server, dead_url):
    with serve_folder(make_site({"index.html": "x"})) as url:
        rules = load_robots(url + "index.html", UA, 5)
        assert rules.can_fetch(url + "anything") and not rules.disallow_all
    down = load_robots(error_server + "page.html", UA, 5)
    assert down.disallow_all and not down.can_fetch(error_server + "page.html")
    assert "503" in down.reason
    unreachable = load_robots(dead_url, UA, 5)
    assert unreachable.disallow_all
