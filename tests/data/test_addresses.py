import pytest

from alignpipe.data.addresses import MAX_URL_CHARS, url_problem


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/a.jpg",
        "HTTPS://Example.COM:8443/a%20b.jpg?q=1&r=%E2%82%AC#top",
        "https://xn--bcher-kva.example/bild.png",
        "http://b\u00fccher.example/bild.png",  # an IDN not yet in punycode
        "http://[::1]:8080/x",
        "http://[fe80::1%25eth0]/x",
        "http://127.0.0.1/",
        "http://2130706433/",  # 127.0.0.1 as one number, as resolvers read it
        "http://1.2.3.4./x",
        "http://user:pw@a.example:80/",
        "http://a_b.example/",
        "http://blog-.tumblr.example/",  # a trailing hyphen: real, if not by the book
        "http://a.example:/x",  # an empty port is the default one
        "http://a.example/" + "x" * (MAX_URL_CHARS - 17),
    ],
)
def test_well_formed_http_urls_have_no_problem(url):
    assert url_problem(url) is None


@pytest.mark.parametrize(
    "url, reason",
    [
        ("", "empty URL"),
        ("img/a.png", "no scheme"),
        ("//cdn.example/a.png", "no scheme"),
        ("http://[::1", "Invalid IPv6 URL"),
        ("http://[::1/a.png", "Invalid IPv6 URL"),
        ("http://[zz]/", "does not appear to be an IPv4 or IPv6 address"),
        ("http://127.0.0.1:99999/x.jpg", "Port out of range"),
        ("http://a.example:http/", "Port could not be cast"),
        ("http://a.example:-1/", "Port could not be cast"),
        ("http://a.example:0/", "port 0"),
        ("http:///x.jpg", "no host"),
        ("http://:80/x.jpg", "no host"),
        ("http:x.jpg", "no host"),
        ("http://a b.example/", "' ' at character 8"),
        ("http://a.example/b c", "' ' at character 18"),
        ("http://a.example/\x00", "'\\x00' at character 17"),
        ("http://a\x7f.example/", "'\\x7f' at character 8"),
        ("http://a.example/\ud800", "'\\ud800' at character 17"),
        ("http://a..example/", "not a valid name"),
        ("http://%41.example/", "not a valid name"),
        ("http://a.example\\b/", "not a valid name"),
        ("http://" + "a" * 64 + ".example/", "not a valid name"),
        ("http://\u2603.example/", "not a valid internationalised name"),
        ("http://999.1.1.1/", "not a valid IPv4 address"),
        ("http://a.example/" + "x" * MAX_URL_CHARS, f"more than {MAX_URL_CHARS}"),
    ],
)
def test_malformed_urls_are_named(url, reason):
    problem = url_problem(url)
    assert problem is not None and problem.outcome == "url_malformed"
    assert reason in problem.reason
    assert problem.reason.isascii() and problem.reason.isprintable() and len(problem.reason) < 200


@pytest.mark.parametrize(
    "url", ["data:image/png;base64,AAAA", "ftp://a.example/x.png", "mailto:a@b.example", "javascript:void(0)"]
)
def test_other_schemes_are_not_http(url):
    problem = url_problem(url)
    assert problem is not None and problem.outcome == "not_http"
    assert problem.reason.startswith("not an http(s) URL: ")
