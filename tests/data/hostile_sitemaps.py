"""The hostile site's `sitemaps` server: a host whose robots.txt names one sitemap hazard per line.

| sitemap                | hazard                                                          |
|------------------------|-----------------------------------------------------------------|
| `/sitemap.xml`         | none: `&amp;` in a URL, a CDATA `<loc>`, an image sitemap's `<image:loc>` |
| `/plain.xml`           | none: a `<urlset>` in no namespace                              |
| `/bomb.xml.gz`         | 64 KB of gzip inflating to 64 MB: one page before the cap, one after |
| `/laughs.xml`          | billion laughs: nine nested entities, 10^9 `lol`s once expanded |
| `/external-entity.xml` | an external entity on the forbidden address                     |
| `/external-dtd.xml`    | an external DTD on the forbidden address                        |
| `/malformed.xml`       | one whole entry, then the file breaks off mid-tag               |
| `/index-a.xml`         | a sitemap index listing `/index-b.xml`, which lists `/index-a.xml` |
| `/index-self.xml`      | a sitemap index listing itself                                  |

`SITEMAP_PAGES` gives each page URL the sitemaps hold (and the seed) with the outcome its
manifest line must end in; None: never met, never fetched.
"""

from __future__ import annotations

import zlib

BOMB_INFLATED_BYTES = 64 << 20  # ~64 KB gzipped: under scrape.max_page_bytes as sent, 640x over inflated
NS = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'
IMAGE_NS = 'xmlns:image="http://www.google.com/schemas/sitemap-image/1.1"'


def urlset(*locs: str, ns: str = NS) -> str:
    entries = "".join(f"\n  <url><loc>{loc}</loc></url>" for loc in locs)
    attributes = f" {ns}" if ns else ""
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<urlset{attributes}>{entries}\n</urlset>\n'


def sitemapindex(*locs: str) -> str:
    entries = "".join(f"\n  <sitemap><loc>{loc}</loc></sitemap>" for loc in locs)
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<sitemapindex {NS}>{entries}\n</sitemapindex>\n'


def gzip_bomb(head: bytes, tail: bytes, inflated_bytes: int = BOMB_INFLATED_BYTES) -> bytes:
    """`head`, `inflated_bytes` of spaces (whitespace XML allows between elements), `tail`, gzipped."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = b" " * (1 << 20)
    body = deflate.compress(head) + b"".join(deflate.compress(block) for _ in range(inflated_bytes >> 20))
    return body + deflate.compress(tail) + deflate.flush()


def billion_laughs(loc: str) -> str:
    """A `<urlset>` whose DTD makes `&lol9;` 10^9 `lol`s, used in the `<loc>` after `loc`'s."""
    entities = ['  <!ENTITY lol0 "lol">']
    entities += [f'  <!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)]
    return with_doctype(urlset(loc, "{sitemaps}/&lol9;.html"), "[\n" + "\n".join(entities) + "\n]")


def with_doctype(xml: str, doctype: str) -> str:
    return xml.replace("\n<urlset", f"\n<!DOCTYPE urlset {doctype}>\n<urlset", 1)


def cut_after(xml: str, text: str) -> str:
    """`xml` up to and including `text`: a file that breaks off there."""
    return xml[: xml.index(text) + len(text)]


# Page path (query included) -> the outcome of its manifest line; None: never met.
SITEMAP_PAGES = {
    "/index.html": "ok",  # the seed
    "/amp.html?a=1&b=2": "ok",
    "/cdata.html?x=1&y=2": "ok",
    "/img/listed-image.png": None,  # an <image:loc>: an image of a page, not a page
    "/private/listed.html": "robots_disallowed",
    "/plain.html": "ok",
    "/before-bomb.html": "ok",
    "/after-bomb.html": None,  # 64 MB into the bomb, past the cap
    "/laughs.html": None,  # in a file refused at its first entity
    "/external.html": None,
    "/kept.html": "ok",
    "/lost.html": None,  # its </loc> never comes
    "/from-index-a.html": "ok",
    "/from-index-b.html": "ok",
    "/from-index-self.html": "ok",
}
# Sitemap path -> its outcome, for those that are not `ok`.
SITEMAP_FAULTS = {
    "/bomb.xml.gz": "too_large",
    "/laughs.xml": "malformed_sitemap",
    "/external-entity.xml": "malformed_sitemap",
    "/external-dtd.xml": "malformed_sitemap",
    "/malformed.xml": "malformed_sitemap",
}
SITEMAPS = {  # path -> body template, filled with `HostileSite.bases`
    "/sitemap.xml": urlset(
        "{sitemaps}/amp.html?a=1&amp;b=2",
        "<![CDATA[{sitemaps}/cdata.html?x=1&y=2]]>",
        "{sitemaps}/private/listed.html",
        "{sitemaps}/index.html",
        ns=f"{NS} {IMAGE_NS}",
    ).replace(
        "</loc></url>",
        "</loc><image:image><image:loc>{sitemaps}/img/listed-image.png</image:loc></image:image></url>",
        1,
    ),
    "/plain.xml": urlset("{sitemaps}/plain.html", ns=""),
    "/laughs.xml": billion_laughs("{sitemaps}/laughs.html"),
    "/external-entity.xml": with_doctype(
        urlset("&ext;", "{sitemaps}/external.html"), '[<!ENTITY ext SYSTEM "{forbidden}/x.html">]'
    ),
    "/external-dtd.xml": with_doctype(urlset("{sitemaps}/external.html"), 'SYSTEM "{forbidden}/sitemap.dtd"'),
    "/malformed.xml": cut_after(urlset("{sitemaps}/kept.html", "{sitemaps}/lost.html"), "lost.html</lo"),
    "/index-a.xml": sitemapindex("{sitemaps}/index-b.xml", "{sitemaps}/pages-a.xml"),
    "/index-b.xml": sitemapindex("{sitemaps}/index-a.xml", "{sitemaps}/pages-b.xml"),
    "/index-self.xml": sitemapindex("{sitemaps}/index-self.xml", "{sitemaps}/pages-self.xml"),
    "/pages-a.xml": urlset("{sitemaps}/from-index-a.html"),
    "/pages-b.xml": urlset("{sitemaps}/from-index-b.html"),
    "/pages-self.xml": urlset("{sitemaps}/from-index-self.html", "{sitemaps}/from-index-a.html"),
}
NAMED_IN_ROBOTS = """/sitemap.xml /plain.xml /bomb.xml.gz /laughs.xml /external-entity.xml
    /external-dtd.xml /malformed.xml /index-a.xml /index-self.xml""".split()


def sitemap_files(bases: dict[str, str]) -> dict[str, tuple[bytes, str]]:
    """Path -> (body, content type) of robots.txt and every sitemap of the `sitemaps` server."""
    robots = "User-agent: *\nDisallow: /private/\n\n"
    robots += "".join(f"Sitemap: {bases['sitemaps']}{path}\n" for path in NAMED_IN_ROBOTS)
    files = {"/robots.txt": (robots.encode(), "text/plain")}
    files |= {path: (xml.format(**bases).encode(), "application/xml") for path, xml in SITEMAPS.items()}
    before, after = (
        f"<url><loc>{bases['sitemaps']}/{when}-bomb.html</loc></url>" for when in ("before", "after")
    )
    head = f'<?xml version="1.0" encoding="UTF-8"?>\n<urlset {NS}>{before}'
    files["/bomb.xml.gz"] = (gzip_bomb(head.encode(), f"{after}</urlset>".encode()), "application/gzip")
    return files
