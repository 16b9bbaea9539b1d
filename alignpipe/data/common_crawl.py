"""Common Crawl WARC and WAT files as a source of pages: the archive instead of the live web.

`read_archive` streams one archive (gzip'd per record as Common Crawl ships it, or plain;
local or `gs://`) and gives one `PageRecord` per archived HTTP response, in file order:

- a WARC `response` record: its body is parsed by `html.parse_page`;
- a WAT `metadata` record (a JSON envelope describing a WARC record): only envelopes of
  `response` records are pages; the images are the `HTML-Metadata -> Links` entries with
  `path == "IMG@/src"` (with their `alt`), resolved against `Head -> Base` or the page URL,
  and the robots directives come from `Head -> Metas`.

`warcinfo`, `request`, `revisit` and WARC `metadata` records, and responses of non-HTTP
URIs (`dns:`), describe no page and give nothing. The page outcome is the first that fits:

| outcome         | meaning                                                          |
|-----------------|------------------------------------------------------------------|
| `http_<status>` | the archived status is not 200 (`http_invalid`: unreadable)       |
| `not_html`      | the Content-Type is not `text/html` / `application/xhtml+xml`    |
| `too_large`     | a WARC body longer than `max_page_bytes`                         |
| `ok`            | the page's `<img>` entries are in `images`                       |

Every image of a page that opts out of AI use (`noai` or `noimageai` in its
`<meta name="robots">` or in an `X-Robots-Tag` header, whatever user agent the header
names) has `opted_out=True`. Memory stays bounded by one record.
"""

from __future__ import annotations

import itertools
import json
import re
import urllib.parse
import zlib
from collections.abc import Iterable, Iterator, Mapping
from typing import BinaryIO

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from warcio.archiveiterator import ArchiveIterator
from warcio.recordloader import ArcWarcRecord

from alignpipe.data.entries import ImageEntry, PageRecord
from alignpipe.data.html import normalise_alt, parse_page, resolve_or_keep, resolve_url
from alignpipe.errors import InputError

HTML_TYPES = ("text/html", "application/xhtml+xml")
OPT_OUT_DIRECTIVES = frozenset({"noai", "noimageai"})
MAX_PAGE_BYTES = 5 << 20  # Common Crawl truncates bodies at 1 MiB; other archives may not
WAT_IMAGE_PATH = "IMG@/src"
_WHOLE_FILE_GZIP = (
    "one gzip stream holds many records; archives must be gzipped record by record (`warcio recompress`)"
)


class _CorruptRecord(Exception):
    """A record that cannot be read whole (translated into an `InputError` naming the file)."""

    @classmethod
    def because(cls, error: Exception) -> _CorruptRecord:
        """The corruption that made warcio (or zlib) raise `error`, in one line."""
        # warcio quotes the offending line, which may be binary: printable ASCII only
        reason = "".join(c if " " <= c <= "~" else "?" for c in " ".join(str(error).split()))[:200]
        if "non-chunked gzip" in reason:
            return cls(_WHOLE_FILE_GZIP)
        if reason.startswith("Unknown archive format"):  # the line it quotes is the binary
            return cls("no WARC or ARC header where a record should start (not a WARC / WAT file?)")
        if isinstance(error, (AttributeError, TypeError, KeyError, IndexError)):
            return cls(f"malformed WARC headers ({type(error).__name__}: {reason})")
        return cls(reason or type(error).__name__)


def read_archive(path: str, max_page_bytes: int = MAX_PAGE_BYTES) -> Iterator[PageRecord]:
    """Streams the pages of one WARC or WAT file.

    Args:
        path: a `.warc[.gz]` or `.wat[.gz]` file (WARC and WAT records may even be mixed),
            local or `gs://`.
        max_page_bytes: WARC bodies longer than this give outcome `too_large`.

    Yields:
        One `PageRecord` per archived HTTP response, with `referrer` "" and `depth` 0; each
        of its `images` has `page_url` set to the page's URL.

    Raises:
        InputError: the file is missing or cannot be opened, holds no archived HTTP response,
            or a record is truncated or corrupt; the message names the file, the record's
            number (from 0) and its byte offset in the file. Every page before that record
            has already been yielded.
    """
    stream = _open(path)
    pages = 0
    try:
        records = ArchiveIterator(stream)
        for number in itertools.count():
            offset = records.offset  # where the next record starts (compressed offset for .gz)
            try:
                record = _next_record(records)
                if record is None:
                    if not pages:
                        raise InputError(f"archive {path}: no archived HTTP response in {number} records")
                    return
                page = _page_of(record, max_page_bytes)
                _finish_record(record, records)
            except _CorruptRecord as e:
                # warcio loses track of offsets inside a whole-file gzip stream
                where = f"record {number}" + (f" (byte offset {offset})" if offset >= 0 else "")
                raise InputError(f"archive {path}: truncated or corrupt at {where}: {e}") from e
            if page is not None:
                pages += 1
                yield page
    finally:
        stream.close()


def _open(path: str) -> BinaryIO:
    """Opens `path` through Beam's file systems; warcio itself gunzips record by record."""
    try:
        if not FileSystems.exists(path):
            raise InputError(f"archive {path}: no such file")
        return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    except InputError:
        raise
    except Exception as e:  # each Beam file system (local, GCS, ...) fails in its own way
        raise InputError(f"archive {path}: cannot be opened: {e}") from e


def _next_record(records: ArchiveIterator) -> ArcWarcRecord | None:
    """The next record, or None at a clean end of the file."""
    try:
        record = next(records, None)
    except Exception as e:  # warcio fails on malformed input in many ways (AttributeError, ...)
        raise _CorruptRecord.because(e) from e
    # warcio also ends quietly when the file stops inside a record's headers
    if record is None and records.fh.tell() > records.offset:
        raise _CorruptRecord(f"the last {records.fh.tell() - records.offset} bytes are not a whole record")
    return record


def _finish_record(record: ArcWarcRecord, records: ArchiveIterator) -> None:
    """Reads the rest of `record` and checks that the file held all of it.

    warcio ends quietly on a truncated file, so the checks are here: the record's block must
    be as long as its Content-Length, and its gzip member must end properly.
    """
    try:
        records.read_to_end()  # the rest of the record, and the end of its gzip member
    except Exception as e:  # as in `_next_record`
        raise _CorruptRecord.because(e) from e
    missing = getattr(record.raw_stream, "limit", 0)
    if missing > 0:
        raise _CorruptRecord(f"the record ends {missing} bytes before its Content-Length ({record.length})")
    decompressor = records.reader.decompressor if records.reader else None
    if decompressor is not None and not decompressor.eof:
        if records.next_line:  # more records follow inside the same gzip member
            raise _CorruptRecord(_WHOLE_FILE_GZIP)
        raise _CorruptRecord("its gzip member is cut short")
    if records.err_count:
        raise _CorruptRecord("the record is not followed by the blank lines that end it")


def _page_of(record: ArcWarcRecord, max_page_bytes: int) -> PageRecord | None:
    try:
        if record.rec_type == "response" and record.http_headers is not None:
            return _warc_page(record, max_page_bytes)
        if record.rec_type == "metadata" and _media_type(record.content_type) == "application/json":
            return _wat_page(record.content_stream().read())
    except (zlib.error, EOFError, OSError) as e:  # reading the block (a bad gzip member, ...)
        raise _CorruptRecord.because(e) from e
    return None


def _warc_page(record: ArcWarcRecord, max_page_bytes: int) -> PageRecord:
    """The page of a WARC `response` record."""
    url = _page_url(record.rec_headers.get_header("WARC-Target-URI") or "")
    http = record.http_headers
    status = http.get_statuscode()
    if status != "200":
        return PageRecord(url, _status_outcome(status), error=http.statusline.strip())
    content_type = http.get_header("Content-Type") or ""
    if _media_type(content_type) not in HTML_TYPES:
        return PageRecord(url, "not_html", error=content_type or "no Content-Type")
    body = record.content_stream().read(max_page_bytes + 1)
    if len(body) > max_page_bytes:
        return PageRecord(url, "too_large", error=f"body longer than {max_page_bytes} bytes")
    page = parse_page(body, url, content_type)
    x_robots = [value for name, value in http.headers if name.lower() == "x-robots-tag"]
    opted_out = _opts_out(page.robots, x_robots)
    images = tuple(ImageEntry(image.image_url, image.alt, url, opted_out) for image in page.images)
    return PageRecord(url, "ok", images=images)


def _wat_page(payload: bytes) -> PageRecord | None:
    """The page of a WAT record, or None when its envelope describes no HTTP response."""
    try:
        envelope = json.loads(payload, object_hook=_usv_object)["Envelope"]
        warc_header = envelope.get("WARC-Header-Metadata", {})
        response = envelope.get("Payload-Metadata", {}).get("HTTP-Response-Metadata")
        if warc_header.get("WARC-Type") != "response" or response is None:
            return None
        return _wat_response_page(_page_url(warc_header.get("WARC-Target-URI", "")), response)
    except (ValueError, KeyError, TypeError, AttributeError) as e:  # JSON, or not the WAT layout
        raise _CorruptRecord(f"not a WAT JSON envelope: {e!r}") from e


def _wat_response_page(url: str, response: dict) -> PageRecord:
    """The page of a WAT `HTTP-Response-Metadata` object."""
    message = response.get("Response-Message", {})
    status = str(message.get("Status", ""))
    if status != "200":
        error = f"HTTP {status} {message.get('Reason', '')}".strip()
        return PageRecord(url, _status_outcome(status), error=error)
    headers = response.get("Headers", {})
    content_type = _wat_header(headers, "Content-Type")
    if _media_type(content_type) not in HTML_TYPES:
        return PageRecord(url, "not_html", error=content_type or "no Content-Type")
    html = response.get("HTML-Metadata", {})
    head = html.get("Head", {})
    robots: set[str] = set()
    for meta in head.get("Metas", []):
        if str(meta.get("name", "")).strip().lower() == "robots":
            robots |= _directives(str(meta.get("content", "")))
    opted_out = _opts_out(frozenset(robots), _wat_header_values(headers, "X-Robots-Tag"))
    links = html.get("Links", [])
    images = tuple(ImageEntry(image, alt, url, opted_out) for image, alt in _wat_images(links, head, url))
    return PageRecord(url, "ok", images=images)


def _wat_images(
    links: list[dict[str, str]], head: Mapping[str, object], page_url: str
) -> Iterator[tuple[str, str]]:
    """(image URL, alt) of the `IMG@/src` links, resolved as `html.parse_page` resolves them."""
    base_url = page_url
    base_href = str(head.get("Base") or "").strip()
    if base_href:
        resolved = _resolve_or_none(page_url, base_href)
        if resolved and urllib.parse.urlsplit(resolved).scheme in ("http", "https"):
            base_url = resolved
    for link in links:
        if link.get("path") != WAT_IMAGE_PATH or not str(link.get("url") or "").strip():
            continue
        # kept when it cannot be resolved, as `html.parse_page` keeps it: counted, not lost
        yield resolve_or_keep(base_url, str(link["url"])), normalise_alt(str(link.get("alt") or ""))


def _resolve_or_none(base: str, ref: str) -> str | None:
    try:
        return resolve_url(base, ref)
    except ValueError:  # e.g. "http://[broken": the page URL stays the base
        return None


def _usv(text: str) -> str:
    """`text` with each lone surrogate (JSON's `"\\ud800"`) replaced by U+FFFD, as a browser
    converts a DOM string: one cannot be encoded, so would fail every later step."""
    if text.isascii() or not any("\ud800" <= c <= "\udfff" for c in text):
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _usv_object(obj: dict) -> dict:
    """`json.loads`' object hook: the object with `_usv` applied to its keys and strings."""
    return {_usv(key): _usv_value(value) for key, value in obj.items()}


def _usv_value(value: object) -> object:
    if isinstance(value, str):
        return _usv(value)
    if isinstance(value, list):
        return [_usv_value(item) for item in value]
    return value  # numbers, and objects (already done by the hook)


def _wat_header_values(headers: Mapping[str, object], name: str) -> list[str]:
    """Every value of an HTTP header in a WAT `Headers` object (names match in any case;
    a repeated header may come as a list)."""
    values: list[str] = []
    for key, value in headers.items():
        if key.lower() == name.lower():
            values += [str(v) for v in value] if isinstance(value, list) else [str(value)]
    return values


def _wat_header(headers: Mapping[str, object], name: str) -> str:
    values = _wat_header_values(headers, name)
    return values[0] if values else ""


def _status_outcome(status: str) -> str:
    return f"http_{status}" if status.isdigit() else "http_invalid"


def _directives(content: str) -> set[str]:
    """Lower-case robots directives of a meta `content` or `X-Robots-Tag` value, without the
    user agent an `X-Robots-Tag` may name first (`otherbot: noai` gives `noai`)."""
    directives = set()
    for token in re.split(r"[\s,]+", content.lower()):
        directive = token.rsplit(":", 1)[-1]
        if directive:
            directives.add(directive)
    return directives


def _opts_out(meta_robots: frozenset[str], x_robots_tags: Iterable[str]) -> bool:
    directives = {d.lower() for d in meta_robots}
    for value in x_robots_tags:
        directives |= _directives(value)
    return bool(directives & OPT_OUT_DIRECTIVES)


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def _page_url(uri: str) -> str:
    """A WARC-Target-URI without the `<...>` some WARC 1.0 writers put around it, or its fragment."""
    return uri.strip().strip("<>").partition("#")[0]  # not urldefrag: it raises on "http://[::1#x"
