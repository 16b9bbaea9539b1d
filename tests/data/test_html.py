import random

import pytest

from alignpipe.data.html import (
    ImageAlt,
    decode_html,
    extract_image_alts,
    extract_links,
    normalise_alt,
    normalise_url,
    parse_page,
    resolve_url,
)

PAGE = "http://example.com/shop/items/page.html"
FRENCH = (
    "<html><head><title>Recette</title></head><body><p>Les élèves ont visité le musée à côté de la "
    "cathédrale. Déjà très fatigués, ils sont rentrés.</p>"
    '<img src="crème.jpg" alt="Crème brûlée « maison » à 5 €"></body></html>'
)
FRENCH_ALT = "Crème brûlée « maison » à 5 €"
FRENCH_URL = "http://example.com/shop/items/cr%C3%A8me.jpg"


def images(html, page=PAGE):
    return parse_page(html, page).images


def test_relative_root_relative_and_absolute_image_urls():
    html = """
    <img src="a.png" alt="one">
    <img src="../b.jpg" alt="two">
    <img src="/c.gif" alt="three">
    <img src="https://cdn.example.net/d.png" alt="four">
    <img src="//img.example.org/e.png" alt="five">
    """
    assert images(html) == [
        ImageAlt("http://example.com/shop/items/a.png", "one"),
        ImageAlt("http://example.com/shop/b.jpg", "two"),
        ImageAlt("http://example.com/c.gif", "three"),
        ImageAlt("https://cdn.example.net/d.png", "four"),
        ImageAlt("http://img.example.org/e.png", "five"),
    ]


def test_first_base_href_resolves_images_and_links():
    html = (
        '<head><base href="/static/img/"><base href="/ignored/"></head>'
        '<img src="x.png" alt="x"><a href="p.html">p</a>'
    )
    page = parse_page(html, PAGE)
    assert page.base_url == "http://example.com/static/img/"
    assert page.images == [ImageAlt("http://example.com/static/img/x.png", "x")]
    assert page.links == ["http://example.com/static/img/p.html"]


def test_base_without_href_or_with_non_http_href_keeps_the_page_url():
    assert parse_page('<base target="_top"><base href="javascript:void(0)">', PAGE).base_url == PAGE


@pytest.mark.parametrize(
    ("srcset", "expected"),
    [
        ("s.png 300w, l.png 1200w, m.png 800w", "l.png"),
        ("a1.png, a3.png 3x, a2.png 2x", "a3.png"),
        ("one.png, two.png 1.5x", "two.png"),  # no descriptor counts as 1x
        ("first.png 2x, second.png 2x", "first.png"),  # ties go to the first
        ("w.png 400w, x.png 4x", "w.png"),  # a width outranks a density
        ("img.jpg?size=1,2 100w, big.jpg?size=3,4 200w", "big.jpg?size=3,4"),  # commas inside URLs
        ("  ,, ", "src.png"),  # no candidates: src
    ],
)
def test_the_largest_srcset_candidate_wins_over_src(srcset, expected):
    html = f'<img src="src.png" srcset="{srcset}" alt="a">'
    assert images(html, "http://e.com/") == [ImageAlt("http://e.com/" + expected, "a")]


def test_picture_sources_of_decodable_types_compete_with_the_img_srcset():
    html = """
    <picture>
      <source type="image/avif" srcset="huge.avif 4000w">
      <source type="image/svg+xml" srcset="vector.svg 5000w">
      <source media="(min-width: 800px)" type="image/webp" srcset="wide.webp 1600w, mid.webp 1000w">
      <source srcset="narrow.jpg 600w">
      <img src="fallback.jpg" srcset="img.jpg 1200w" alt="A  harbour">
    </picture>
    <picture><source type="image/avif" srcset="only.avif"><img src="plain.png" alt="plain"></picture>
    """
    assert images(html, "http://e.com/") == [
        ImageAlt("http://e.com/wide.webp", "A harbour"),
        ImageAlt("http://e.com/plain.png", "plain"),
    ]


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ('src="ph.gif" data-src="real.jpg"', "real.jpg"),
        ('src="ph.gif" data-lazy-src="lazy.jpg"', "lazy.jpg"),
        ('src="ph.gif" data-original="orig.jpg"', "orig.jpg"),
        ('src="ph.gif" srcset="s.jpg 2000w" data-src="real.jpg"', "real.jpg"),
        ('data-src="small.jpg" data-srcset="m.jpg 800w, l.jpg 1600w"', "l.jpg"),
        ('src="ph.gif" data-src="  "', "ph.gif"),
    ],
)
def test_lazy_loading_attributes_win(attrs, expected):
    expected_image = ImageAlt("http://e.com/" + expected, "lazy")
    assert images(f'<img {attrs} alt="lazy">', "http://e.com/") == [expected_image]


def test_missing_empty_and_valueless_alt_give_empty_string_and_sourceless_imgs_are_skipped():
    html = (
        '<img src="a.png"><img src="b.png" alt=""><img src="c.png" alt><img alt="no source">'
        '<img src="   " alt="blank source"><IMG SRC="d.png" ALT="Upper"/>'
    )
    assert [(i.image_url.rsplit("/", 1)[1], i.alt) for i in images(html)] == [
        ("a.png", ""),
        ("b.png", ""),
        ("c.png", ""),
        ("d.png", "Upper"),
    ]


def test_alt_entities_are_decoded_and_unicode_whitespace_collapsed():
    html = '<img src="a.png" alt="  Fish&nbsp;&amp;&#160;chips\n\t &quot;to go&quot;\u2003&#233;t&eacute;  ">'
    assert images(html)[0].alt == 'Fish & chips "to go" été'
    assert normalise_alt("\u00a0 a \u3000\u2009 b\u00a0") == "a b"


def test_data_urls_are_kept_verbatim():
    src = "data:image/png;base64,iVBORw0KGgo="
    assert images(f'<img src="{src}" alt="dot">') == [ImageAlt(src, "dot")]


def test_idn_hosts_become_punycode_and_unsafe_characters_are_percent_encoded():
    html = '<img src="http://Bücher.Example/ä b.png?q=ü x&y=%41" alt="book">'
    url = "http://xn--bcher-kva.example/%C3%A4%20b.png?q=%C3%BC%20x&y=%41"
    assert images(html) == [ImageAlt(url, "book")]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTP://Example.COM:8080/A%2fB", "http://example.com:8080/A%2fB"),
        ("https://example.com", "https://example.com/"),
        ("http://[::1]:8000/x y", "http://[::1]:8000/x%20y"),
        ("http://user name@example.com/", "http://user%20name@example.com/"),
        ("https://例え.テスト/パス", "https://xn--r8jz45g.xn--zckzah/%E3%83%91%E3%82%B9"),
        ("mailto:someone@example.com", "mailto:someone@example.com"),
    ],
)
def test_normalise_url(url, expected):
    assert normalise_url(url) == expected


def test_resolve_url_strips_whitespace_tabs_and_newlines_as_browsers_do():
    assert resolve_url(PAGE, "  ../big\n pic.png\t ") == "http://example.com/shop/big%20pic.png"


def test_links_are_absolute_http_without_fragments_or_repeats():
    html = """
    <a href="next.html#top">next</a> <a href="next.html">again</a> <a href="#section">self</a>
    <a href="mailto:x@example.com">mail</a> <a href="javascript:void(0)">js</a>
    <a href="https://other.org/a?q=1#f">other</a> <a>no href</a> <a href="  /root.html ">root</a>
    <a href="HTTPS://OTHER.org/a?q=1">same as other</a> <a href="/x" rel="nofollow">nofollow</a>
    <map><area href="/area.html"></map>
    """
    assert extract_links(html, PAGE) == [
        "http://example.com/shop/items/next.html",
        "http://example.com/shop/items/page.html",
        "https://other.org/a?q=1",
        "http://example.com/root.html",
        "http://example.com/x",
        "http://example.com/area.html",
    ]


def test_sources_and_links_that_cannot_be_resolved_are_kept_as_written_to_be_counted():
    html = """
    <img src=" http://[::1/a.png " alt="bracket"><img src="b\x01.png" alt="control">
    <img src="http://h:99999/c.png" alt="port">
    <a href="http://[::1/page">a</a> <a href="ftp://[::1/x">other scheme</a> <a href="d\x02.html">d</a>
    <a href="http://h:99999/e.html">e</a>
    """
    page = parse_page(html, PAGE)
    assert page.images == [
        ImageAlt("http://[::1/a.png", "bracket"),
        ImageAlt("b\x01.png", "control"),
        ImageAlt("http://h:99999/c.png", "port"),  # resolvable; the download names the port
    ]
    assert page.links == ["http://[::1/page", "d\x02.html", "http://h:99999/e.html"]
    with pytest.raises(ValueError, match="control character"):
        resolve_url(PAGE, "b\x01.png")


def test_meta_robots_directives_are_collected_lower_case():
    html = (
        '<meta name="ROBOTS" content="NoAI, noimageai  nofollow"><meta name="robots" content="noindex">'
        '<meta name="googlebot" content="noarchive"><meta name="description" content="noai">'
    )
    assert parse_page(html, PAGE).robots == {"noai", "noimageai", "nofollow", "noindex"}
    assert parse_page("<p>none</p>", PAGE).robots == frozenset()


def test_cp1252_bytes_with_a_header_charset():
    page = parse_page(FRENCH.encode("cp1252"), PAGE, "text/html; charset=windows-1252")
    assert (page.encoding, page.images) == ("cp1252", [ImageAlt(FRENCH_URL, FRENCH_ALT)])


def test_latin1_label_is_decoded_as_its_cp1252_superset():
    text, encoding = decode_html("<p>5 € – “x”</p>".encode("cp1252"), 'text/html; charset="ISO-8859-1"')
    assert (text, encoding) == ("<p>5 € – “x”</p>", "cp1252")


@pytest.mark.parametrize(
    "declaration",
    [
        '<meta charset="windows-1252">',
        '<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1">',
    ],
)
def test_cp1252_bytes_with_a_meta_charset(declaration):
    page = parse_page((declaration + FRENCH).encode("cp1252"), PAGE, "text/html")
    assert (page.encoding, page.images) == ("cp1252", [ImageAlt(FRENCH_URL, FRENCH_ALT)])


def test_cp1252_bytes_without_declaration_are_detected():
    page = parse_page(FRENCH.encode("cp1252"), PAGE)
    assert (page.encoding, page.images) == ("cp1252", [ImageAlt(FRENCH_URL, FRENCH_ALT)])


def test_shift_jis_page_with_meta_charset():
    html = '<meta charset="Shift_JIS"><img src="a.png" alt="日本語の説明">'
    text, encoding = decode_html(html.encode("shift_jis"))
    assert (text, encoding) == (html, "cp932")


def test_a_byte_order_mark_wins_over_the_header():
    body = '\ufeff<img src=a.png alt="été">'.encode()
    assert decode_html(body, "text/html; charset=iso-8859-1") == ('<img src=a.png alt="été">', "utf-8")
    body = '\ufeff<img alt="été">'.encode("utf-16-le")
    assert decode_html(body) == ('<img alt="été">', "utf-16-le")


def test_unknown_or_non_text_charsets_fall_back_and_bad_bytes_are_replaced():
    assert decode_html(b"<p>ok</p>", "text/html; charset=x-klingon") == ("<p>ok</p>", "utf-8")
    assert decode_html(b"<p>ok</p>", "text/html; charset=base64") == ("<p>ok</p>", "utf-8")
    assert decode_html(b"<p>\xff</p>", "text/html; charset=utf-8") == ("<p>\ufffd</p>", "utf-8")


def test_text_input_skips_decoding():
    assert parse_page("<p>x</p>", PAGE).encoding == ""


def test_malformed_html_is_parsed_leniently():
    html = '<div><p><img src=a.png alt=unquoted words><img src="b.png" alt="x"</div>'
    html += '<img src="c.png" alt="unclosed'
    assert images(html, "http://e.com/") == [
        ImageAlt("http://e.com/a.png", "unquoted"),
        ImageAlt("http://e.com/b.png", "x"),
    ]


def test_malformed_pages_and_urls_never_raise():
    rng = random.Random(0)
    nasty = [
        b"",
        b"<",
        b"<img",
        b"\xff\xfe\x00",
        b"<img src='http://[::1/x' alt=a><a href='http://[broken'>x</a><img src='http://a.com:99999/x'>",
        b"<base href='http://[bad'><img src=x.png>",
        b"<img srcset=', , 1x 2x w' src=a.png><img data-srcset='x.png 10q'>",
        b"<a href='http://xn--.com/\x00'>" * 3 + b"<div>" * 5000,
        bytes(rng.randrange(256) for _ in range(5000)),
        "<img src='http://ex\u2100ample.com/'><a href='https://a\uff0fb.com/'>".encode(),
    ]
    for body in nasty:
        page = parse_page(body, "http://e.com/")
        assert all(isinstance(image, ImageAlt) for image in page.images)


def test_the_wrappers_return_what_parse_page_returns():
    html = '<img src="a.png" alt="a"><a href="b.html">b</a>'
    page = parse_page(html, PAGE)
    assert extract_image_alts(html, PAGE) == page.images
    assert extract_links(html, PAGE) == page.links
