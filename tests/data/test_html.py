from alignpipe.data.html import ImageAlt, extract_image_alts, extract_links

PAGE = "http://example.com/shop/items/page.html"


def test_relative_root_relative_and_absolute_image_urls():
    html = """
    <img src="a.png" alt="one">
    <img src="../b.jpg" alt="two">
    <img src="/c.gif" alt="three">
    <img src="https://cdn.example.net/d.png" alt="four">
    <img src="//img.example.org/e.png" alt="five">
    """
    assert extract_image_alts(html, PAGE) == [
        ImageAlt("http://example.com/shop/items/a.png", "one"),
        ImageAlt("http://example.com/shop/b.jpg", "two"),
        ImageAlt("http://example.com/c.gif", "three"),
        ImageAlt("https://cdn.example.net/d.png", "four"),
        ImageAlt("http://img.example.org/e.png", "five"),
    ]


def test_base_href_changes_resolution_of_images_and_links():
    html = (
        '<head><base href="/static/img/"><base href="/ignored/"></head>'
        '<img src="x.png" alt="x"><a href="p.html">p</a>'
    )
    assert extract_image_alts(html, PAGE) == [ImageAlt("http://example.com/static/img/x.png", "x")]
    assert extract_links(html, PAGE) == ["http://example.com/static/img/p.html"]


def test_alt_is_unescaped_and_whitespace_normalised():
    html = '<img src="a.png" alt="  Fish &amp; chips\n\t &quot;to go&quot; &#233;t&eacute;  ">'
    assert extract_image_alts(html, PAGE)[0].alt == 'Fish & chips "to go" été'


def test_missing_and_empty_alt_give_empty_string_and_srcless_imgs_are_skipped():
    html = '<img src="a.png"><img src="b.png" alt=""><img alt="no source"><IMG SRC="c.png" ALT="Upper"/>'
    assert extract_image_alts(html, PAGE) == [
        ImageAlt("http://example.com/shop/items/a.png", ""),
        ImageAlt("http://example.com/shop/items/b.png", ""),
        ImageAlt("http://example.com/shop/items/c.png", "Upper"),
    ]


def test_lazy_data_src_wins_and_spaces_are_percent_encoded():
    html = '<img src="/placeholder.gif" data-src="big pic.png" alt="lazy">'
    assert extract_image_alts(html, PAGE) == [ImageAlt("http://example.com/shop/items/big%20pic.png", "lazy")]


def test_malformed_html_is_parsed_leniently():
    html = '<div><p><img src=a.png alt=unquoted words><img src="b.png" alt="x"</div>'
    html += '<img src="c.png" alt="unclosed'
    assert extract_image_alts(html, "http://e.com/") == [
        ImageAlt("http://e.com/a.png", "unquoted"),
        ImageAlt("http://e.com/b.png", "x"),
    ]


def test_links_are_absolute_http_without_fragments_or_repeats():
    html = """
    <a href="next.html#top">next</a> <a href="next.html">again</a>
    <a href="mailto:x@example.com">mail</a> <a href="javascript:void(0)">js</a>
    <a href="https://other.org/a?q=1#f">other</a> <a>no href</a> <a href="  /root.html ">root</a>
    <map><area href="/area.html"></map>
    """
    assert extract_links(html, PAGE) == [
        "http://example.com/shop/items/next.html",
        "https://other.org/a?q=1",
        "http://example.com/root.html",
        "http://example.com/area.html",
    ]
