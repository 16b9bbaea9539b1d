"""Pure HTML extraction: a page's (image URL, alt-text) pairs, links and robots directives.

A page is decoded once (`decode_html`: header charset, BOM, in-document declaration, detection)
and parsed once with selectolax's Lexbor engine, an HTML5 parser that builds the tree a browser
builds, so malformed real-world HTML never raises. URLs are resolved against the page URL, or
its first `<base href>`, and normalised (`normalise_url`).

Image source policy, for each `<img>` (one `ImageAlt` per `<img>` that has a source):

1. lazy loading wins: the largest `data-srcset` candidate (competing with `<picture>` sources
   as in 2), else `data-src`, `data-lazy-src`, `data-original` (`src` is then a placeholder);
2. else the largest candidate among the `<img srcset>` and, inside `<picture>`, the `srcset` of
   each preceding `<source>` whose `type` is absent or one PIL decodes (JPEG, PNG, GIF, WebP,
   BMP); `media` conditions are ignored, since art-directed variants show the same subject and
   the largest makes the best training image;
3. else `src`.

"Largest" compares width descriptors (`800w`), then densities (`2x`); a candidate without a
descriptor counts as `1x`, a width descriptor outranks a density, and ties go to the first
candidate in document order. `data:` URLs are kept (the caller counts and skips them), and so
is a source that cannot be resolved (`http://[::1`, a control character), as written: the
download counts it `url_malformed` (`addresses.url_problem`) instead of losing it here.

Example:
    >>> page = '<base href="/img/"><img src="a.png" srcset="a2.png 2x" alt=" red&amp;blue ">'
    >>> parse_page(page, "http://example.com/shop/p.html").images
    [ImageAlt(image_url='http://example.com/img/a2.png', alt='red&blue')]
"""

from __future__ import annotations

import codecs
import dataclasses
import functools
import re
import urllib.parse

import charset_normalizer
import idna
from selectolax.lexbor import LexborHTMLParser, LexborNode

_SELECTOR = "base[href], meta[name], img, a[href], area[href]"
_LAZY_SRC_ATTRS = ("data-src", "data-lazy-src", "data-original")
# MIME types of <picture><source type=...> whose images PIL decodes.
_IMAGE_TYPES = frozenset(
    {"image/jpeg", "image/jpg", "image/pjpeg", "image/png", "image/gif", "image/webp", "image/bmp"}
)

# Characters kept as they are when percent-encoding each URL component ('%' keeps %XX escapes).
_PATH_SAFE = "/%!$&'()*+,;=:@~"
_QUERY_SAFE = "/?%!$&'()*+,;=:@~[]"
_USERINFO_SAFE = "%!$&'()*+,;=:~"
_MEMO_MAX_CHARS = 256  # longer references are resolved without memoising them
_TAB_NEWLINE = re.compile(r"[\t\n\r]")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # C0 controls but tab and newlines, DEL
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
# An http(s) URL that normalise_url would return unchanged (most URLs of real pages).
_NORMAL_URL = re.compile(
    r"https?://[a-z0-9.-]+(?::[0-9]+)?/[\w\-.~!$&'()*+,;=:@/%]*(?:\?[\w\-.~!$&'()*+,;=:@/%?]*)?"
    r"(?:#[\w\-.~!$&'()*+,;=:@/%?]*)?",
    re.ASCII,
)

# Charset declarations: the Content-Type header, <meta charset> / <meta http-equiv> in the
# first bytes of the page, and (for XHTML) the XML declaration.
_PRESCAN_BYTES = 4096
_HEADER_CHARSET = re.compile(r"""charset\s*=\s*["']?\s*([\w:.+-]+)""", re.I)
_META_CHARSET = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([\w:.+-]+)""", re.I)
_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']\s*([\w:.+-]+)""", re.I)
_CP1252_SLACK = 0.1  # how much more "mess" (charset_normalizer's chaos) cp1252 may show
_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
# Labels Python does not know, and codecs replaced by the superset browsers decode them with
# (the WHATWG Encoding Standard: a page labelled latin-1 is really windows-1252, and so on).
_LABEL_ALIASES = {"x-sjis": "cp932", "windows-31j": "cp932", "x-gbk": "gbk"}
_SUPERSETS = {
    "ascii": "cp1252",
    "iso8859-1": "cp1252",
    "iso8859-9": "cp1254",
    "iso8859-11": "cp874",
    "tis-620": "cp874",
    "shift_jis": "cp932",
    "gb2312": "gbk",
    "euc_kr": "cp949",
    "utf-16": "utf-16-le",  # a UTF-16 label without a byte-order mark
}


@dataclasses.dataclass(frozen=True)
class ImageAlt:
    """One `<img>` of a page.

    Attributes:
        image_url: absolute, normalised URL of the chosen source; the source as written
            (stripped) when it cannot be resolved (see the module docstring).
        alt: entity-decoded, whitespace-normalised alt-text; "" when missing or empty.
    """

    image_url: str
    alt: str


@dataclasses.dataclass(frozen=True)
class ParsedPage:
    """Everything the data path needs from one page, from a single parse.

    Attributes:
        base_url: the page URL, or its first `<base href>` resolved against it.
        encoding: the Python codec the bytes were decoded with; "" when the page came as text.
        images: one `ImageAlt` per `<img>` with a source, in document order.
        links: absolute http(s) URLs of `<a href>` / `<area href>` without fragments, without
            repeats, in first-occurrence order (`rel=nofollow` links included); an href that
            cannot be resolved and names no other scheme is kept as written (stripped), for
            the crawl to count it `url_malformed`.
        robots: lower-case directives of `<meta name="robots">`, e.g. {"noai", "nofollow"}.
    """

    base_url: str
    encoding: str
    images: list[ImageAlt]
    links: list[str]
    robots: frozenset[str]


@functools.lru_cache(maxsize=256)
def _codec(label: str | bytes) -> str | None:
    """The Python codec for a charset label, widened to its browser superset; None if unknown."""
    if isinstance(label, bytes):
        label = label.decode("ascii", errors="replace")
    label = label.strip().lower()
    try:
        name = codecs.lookup(_LABEL_ALIASES.get(label, label)).name
        "a".encode(name)  # rejects base64, rot13, ...: codecs that are not text encodings
    except (LookupError, ValueError):
        return None
    return _SUPERSETS.get(name, name)


def _declared_charset(head: bytes) -> str | None:
    match = _META_CHARSET.search(head) or _XML_ENCODING.search(head)
    codec = _codec(match.group(1)) if match else None
    # A declaration readable as ASCII cannot be in UTF-16 (the HTML Standard's own rule).
    return "utf-8" if codec is not None and codec.startswith("utf-16") else codec


def _detected_charset(body: bytes) -> str:
    try:
        body.decode("utf-8")
        return "utf-8"  # valid UTF-8 (ASCII included): detection could only do worse
    except UnicodeDecodeError:
        pass
    matches = charset_normalizer.from_bytes(body)
    best = matches.best()
    if best is None:
        return "utf-8"
    # charset_normalizer often ranks a sibling Latin code page (cp1257, cp1250) first on
    # French or Spanish text; windows-1252, the web's commonest legacy charset and the
    # browsers' fallback, wins whenever it reads the bytes nearly as cleanly.
    for match in matches:
        if "cp1252" in match.could_be_from_charset and match.chaos <= best.chaos + _CP1252_SLACK:
            return "cp1252"
    return _codec(best.encoding) or "utf-8"


def decode_html(body: bytes, content_type: str = "") -> tuple[str, str]:
    """Decodes a page's bytes as a browser would.

    The charset is the first of: a byte-order mark (which browsers honour even over the HTTP
    header), the `charset` parameter of the Content-Type header, a `<meta charset>` /
    `<meta http-equiv="content-type">` (or XML declaration) in the first 4 KiB, detection
    (valid UTF-8, else `charset_normalizer`), and UTF-8. Legacy labels are widened to the
    superset browsers use (latin-1 and ASCII to cp1252, shift_jis to cp932, ...).

    Args:
        body: the raw response body.
        content_type: the Content-Type header, e.g. "text/html; charset=windows-1252".

    Returns:
        (text, encoding): the text (BOM removed, undecodable bytes replaced by U+FFFD) and the
        Python codec name used.
    """
    for bom, codec in _BOMS:
        if body.startswith(bom):
            return body[len(bom) :].decode(codec, errors="replace"), codec
    match = _HEADER_CHARSET.search(content_type)
    codec = _codec(match.group(1)) if match else None
    codec = codec or _declared_charset(body[:_PRESCAN_BYTES]) or _detected_charset(body)
    return body.decode(codec, errors="replace"), codec


def _normalise_host(host: str) -> str:
    if host.isascii():
        return host.lower()
    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        return urllib.parse.quote(host.lower(), safe="-._~!$&'()*+,;=:[]%")


def normalise_url(url: str) -> str:
    """A URL in the form a browser requests it.

    Lower-cases the scheme and host, converts an internationalised host to punycode (IDNA with
    UTS #46 mapping), and percent-encodes unsafe characters (spaces, non-ASCII, quotes, ...) in
    the user info, path, query and fragment as UTF-8, keeping existing `%XX` escapes. URLs
    without a host (`data:`, `mailto:`, ...) are returned as they are.

    Args:
        url: an absolute URL.

    Returns:
        The normalised URL.

    Raises:
        ValueError: when the URL cannot be split (e.g. an unbalanced IPv6 bracket).
    """
    if _NORMAL_URL.fullmatch(url):
        return url
    parts = urllib.parse.urlsplit(url)
    if not parts.netloc:
        return url
    userinfo, at, hostport = parts.netloc.rpartition("@")
    host, colon, port = hostport.rpartition(":")
    if not (port.isascii() and port.isdigit()):  # no port, or the ':' is inside "[::1]"
        host, colon, port = hostport, "", ""
    netloc = urllib.parse.quote(userinfo, safe=_USERINFO_SAFE) + at + _normalise_host(host) + colon + port
    scheme = parts.scheme.lower()
    path = parts.path or ("/" if scheme in ("http", "https") else "")
    return urllib.parse.urlunsplit(
        (
            scheme,
            netloc,
            urllib.parse.quote(path, safe=_PATH_SAFE),
            urllib.parse.quote(parts.query, safe=_QUERY_SAFE),
            urllib.parse.quote(parts.fragment, safe=_QUERY_SAFE),
        )
    )


def resolve_url(base: str, ref: str) -> str:
    """`ref` made absolute against `base` and normalised (see `normalise_url`).

    Leading/trailing whitespace and embedded tabs/newlines are dropped first, as browsers do.

    Raises:
        ValueError: when `base` or `ref` cannot be split as a URL, or `ref` holds another
            control character (browsers would percent-encode it; no real URL holds one, so
            it is a sign of a corrupt record, left for `addresses.url_problem` to name).
    """
    ref = _TAB_NEWLINE.sub("", ref.strip())
    control = _CONTROL.search(ref)
    if control:
        raise ValueError(f"control character {control.group()!a} in the URL")
    return normalise_url(urllib.parse.urljoin(base, ref))


def normalise_alt(alt: str) -> str:
    """Collapses runs of Unicode whitespace (NBSP included) to one space and strips the ends."""
    return " ".join(alt.split())


def _srcset_candidates(srcset: str | None) -> list[tuple[str, float, float]]:
    """(url, width, density) of each `srcset` candidate (WHATWG parsing, commas in URLs kept)."""
    candidates, pos, text = [], 0, srcset or ""
    while True:
        while pos < len(text) and (text[pos].isspace() or text[pos] == ","):
            pos += 1
        if pos >= len(text):
            return candidates
        end = pos
        while end < len(text) and not text[end].isspace():
            end += 1
        url, descriptors, pos = text[pos:end], "", end
        if url.endswith(","):
            url = url.rstrip(",")
        else:
            end = text.find(",", pos)
            end = len(text) if end < 0 else end
            descriptors, pos = text[pos:end], end + 1
        width, density = 0.0, 1.0
        for descriptor in descriptors.split():
            try:
                if descriptor[-1] in "wW":
                    width = float(descriptor[:-1])
                elif descriptor[-1] in "xX":
                    density = float(descriptor[:-1])
            except ValueError:
                pass  # an invalid descriptor: the candidate keeps its defaults
        if url:
            candidates.append((url, width, density))


def _largest(candidates: list[tuple[str, float, float]]) -> str | None:
    if not candidates:
        return None
    return max(candidates, key=lambda c: (c[1], c[2]))[0]  # max() keeps the first of equals


def _picture_candidates(img: LexborNode) -> list[tuple[str, float, float]]:
    """The candidates of the `<source>`s before `img` in its `<picture>`, of decodable types."""
    parent = img.parent
    if parent is None or parent.tag != "picture":
        return []
    candidates = []
    for child in parent.iter():
        if child.tag == "img":
            break
        attrs = child.attributes
        media_type = (attrs.get("type") or "").split(";")[0].strip().lower()
        if child.tag == "source" and (not media_type or media_type in _IMAGE_TYPES):
            candidates += _srcset_candidates(attrs.get("data-srcset") or attrs.get("srcset"))
    return candidates


def _image_source(img: LexborNode, attrs: dict[str, str | None]) -> str | None:
    """The raw (unresolved) source of one `<img>` under the module's policy; None if it has none."""
    lazy_set = _srcset_candidates(attrs.get("data-srcset"))
    if lazy_set:
        return _largest(_picture_candidates(img) + lazy_set)
    for name in _LAZY_SRC_ATTRS:
        value = (attrs.get(name) or "").strip()
        if value:
            return value
    chosen = _largest(_picture_candidates(img) + _srcset_candidates(attrs.get("srcset")))
    return chosen or (attrs.get("src") or "").strip() or None


def _resolve_or_none(base: str, ref: str) -> str | None:
    try:
        return resolve_url(base, ref)
    except ValueError:  # e.g. "http://[broken"
        return None


def resolve_or_keep(base: str, ref: str) -> str:
    """`resolve_url(base, ref)`, or `ref` stripped when it cannot be resolved: a source that
    is kept to be counted (`addresses.url_problem` names what is wrong with it)."""
    resolved = _resolve_or_none(base, ref)
    return ref.strip() if resolved is None else resolved


def _names_other_scheme(ref: str) -> bool:
    scheme = _SCHEME.match(ref.strip())
    return scheme is not None and scheme.group(1).lower() not in ("http", "https")


@functools.lru_cache(maxsize=1 << 15)
def _resolve_in_directory(directory: str, ref: str) -> str | None:
    return _resolve_or_none(directory, ref)


class _Resolver:
    """Resolves a page's references, memoised across pages that share a directory: a non-empty
    reference that starts with neither '?' nor '#' resolves the same against the page URL as
    against its directory, so a site's navigation links are joined once (`data:` URLs are not)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        try:
            parts = urllib.parse.urlsplit(base_url)
            path = parts.path[: parts.path.rfind("/") + 1] or "/"
            self.directory = urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))
        except ValueError:
            self.directory = ""

    def __call__(self, ref: str) -> str | None:
        ref = ref.strip()
        if ref and ref[0] not in "?#" and len(ref) <= _MEMO_MAX_CHARS and self.directory:
            return _resolve_in_directory(self.directory, ref)
        return _resolve_or_none(self.base_url, ref)


def _robots_directives(content: str | None) -> set[str]:
    return {d for d in re.split(r"[\s,]+", (content or "").lower()) if d}


def _is_link(url: str | None) -> bool:
    return url is not None and url.startswith(("http://", "https://"))


def parse_page(body: bytes | str, page_url: str, content_type: str = "") -> ParsedPage:
    """Parses one page once and extracts its images, links and robots directives.

    Args:
        body: the raw response body (decoded with `decode_html`), or already-decoded text.
        page_url: the absolute URL the page was fetched from (after redirects).
        content_type: the response's Content-Type header, for its charset.

    Returns:
        The `ParsedPage`. Never raises on malformed HTML; image sources and http(s) links
        that cannot be resolved are kept as written (see `ParsedPage`).
    """
    text, encoding = decode_html(body, content_type) if isinstance(body, bytes) else (body, "")
    base_href, raw_images, hrefs, robots = None, [], [], set()
    for node in LexborHTMLParser(text).css(_SELECTOR):
        attrs = node.attributes
        tag = node.tag
        if tag == "img":
            source = _image_source(node, attrs)
            if source:
                raw_images.append((source, attrs.get("alt") or ""))
        elif tag in ("a", "area"):
            hrefs.append((attrs.get("href") or "").partition("#")[0])  # fragments never matter
        elif tag == "base":
            if base_href is None and (attrs.get("href") or "").strip():
                base_href = attrs["href"]
        elif tag == "meta" and (attrs.get("name") or "").strip().lower() == "robots":
            robots |= _robots_directives(attrs.get("content"))
    resolved_base = _resolve_or_none(page_url, base_href) if base_href is not None else None
    base_url = resolved_base if _is_link(resolved_base) else page_url
    resolve = _Resolver(base_url)
    images = [ImageAlt(resolve(source) or source.strip(), normalise_alt(alt)) for source, alt in raw_images]
    links: dict[str, None] = {}
    for href in dict.fromkeys(hrefs):  # pages repeat hrefs: resolve each one once
        url = resolve(href)
        if url is None and href.strip() and not _names_other_scheme(href):
            links.setdefault(href.strip(), None)  # kept to be counted as malformed
        elif _is_link(url):
            links.setdefault(urllib.parse.urldefrag(url).url if "#" in url else url, None)
    return ParsedPage(base_url, encoding, images, list(links), frozenset(robots))


def extract_image_alts(page_html: str, page_url: str) -> list[ImageAlt]:
    """`parse_page(page_html, page_url).images`: one `ImageAlt` per `<img>` with a source."""
    return parse_page(page_html, page_url).images


def extract_links(page_html: str, page_url: str) -> list[str]:
    """`parse_page(page_html, page_url).links`: absolute http(s) links, fragments removed."""
    return parse_page(page_html, page_url).links
