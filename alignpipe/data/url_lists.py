"""Image URL + caption lists as LAION, COYO, CC3M and CC12M ship them, read as a stream.

Formats, chosen by the file name (local path or `gs://` URI):

| suffix                 | layout                                                          |
|------------------------|-----------------------------------------------------------------|
| `.parquet`             | columns, read by record batches (LAION: `URL`, `TEXT`; COYO:    |
|                        | `url`, `text`)                                                  |
| `.tsv`, `.tsv.gz`      | tab-separated, no quoting (fields hold no tabs or newlines)     |
| `.csv`, `.csv.gz`      | comma-separated, RFC 4180 quoting                               |

A header row names the columns. A TSV / CSV may also come without one, as CC3M
(`caption<TAB>url`) and CC12M (`url<TAB>caption`) ship it. The first row is a header when
it names a column of `URL_COLUMNS` (or the named `url_column`); else the URL column is
where the first http(s) URL of the first `HEADER_PEEK_ROWS` rows is, and the first row is
data unless its cell there is a name (letters, digits, `_`, `-`, spaces: a header naming an
unknown URL column, an error). So a broken URL in the first row (empty, `http://[::1`,
`www.example.com/a.jpg`) neither hides the URL column nor turns the row into a header.
The caption column of a header-less list is the first other one. Blank lines are not rows.

Without `url_column` / `caption_column`, the first present of `URL_COLUMNS` /
`CAPTION_COLUMNS` is used (case-sensitive); a list without a caption column gives
alt "" everywhere. Every row gives exactly one `ImageEntry`, including rows whose URL
is empty, malformed or not http(s): the download counts those as `url_malformed` or
`not_http` (`addresses.url_problem`) instead of losing them here. A list without any row
is an error, not an empty success. Memory stays bounded by one record batch (parquet) or
one line.

Example:
    >>> for entry in read_url_list("gs://bucket/laion/part-00000.parquet"):  # doctest: +SKIP
    ...     print(entry.url, entry.alt)
"""

from __future__ import annotations

import _csv
import csv
import gzip
import itertools
import re
import zlib
from collections.abc import Iterator
from typing import BinaryIO

import pyarrow
import pyarrow.parquet
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from alignpipe.data.entries import ImageEntry
from alignpipe.data.html import normalise_alt, resolve_url
from alignpipe.errors import InputError

URL_COLUMNS = ("url", "URL", "image_url", "img_url")
CAPTION_COLUMNS = ("caption", "TEXT", "text", "alt", "alt_text", "title")
FORMATS = {".parquet": "parquet", ".tsv": "tsv", ".tsv.gz": "tsv", ".csv": "csv", ".csv.gz": "csv"}
PARQUET_BATCH_ROWS = 8192
MAX_LINE_BYTES = 1 << 20
HEADER_PEEK_ROWS = 100  # rows read to find the URL column of a list without a header
_COLUMN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_ -]*")  # no '/', '.' or ':', which URLs hold


def read_url_list(path: str, url_column: str = "", caption_column: str = "") -> Iterator[ImageEntry]:
    """Streams the (image URL, caption) rows of a url list as `ImageEntry`s, in file order.

    Args:
        path: a `.parquet`, `.tsv[.gz]` or `.csv[.gz]` file, local or `gs://`.
        url_column: the column of image URLs; "" picks the first of `URL_COLUMNS` present.
        caption_column: the column of captions; "" picks the first of `CAPTION_COLUMNS`
            present (none present: every alt is "").

    Yields:
        One `ImageEntry` per row: the URL normalised (`html.resolve_url`; "" stays ""),
        the caption whitespace-normalised as `alt`, `page_url` "".

    Raises:
        InputError: the file is missing or unreadable, its format is unknown, a named
            column (or any URL column) is missing, or it holds no row.
    """
    rows = 0
    for url, caption in _url_caption_rows(path, url_column, caption_column):
        rows += 1
        yield ImageEntry(url=_normalised_url(url), alt=normalise_alt(caption))
    if not rows:
        raise InputError(f"url list {path}: no rows (an empty file, or a header only)")


def iter_url_list_units(
    path: str, unit_size: int, url_column: str = "", caption_column: str = ""
) -> Iterator[tuple[int, list[ImageEntry]]]:
    """Cuts a url list into numbered work units of `unit_size` consecutive rows.

    The same file always gives the same units, so a stage can record the numbers of
    finished units and skip them when resumed.

    Args:
        path: as for `read_url_list`.
        unit_size: rows per unit (the last unit may be shorter).
        url_column: as for `read_url_list`.
        caption_column: as for `read_url_list`.

    Yields:
        `(unit_number, entries)` with unit numbers 0, 1, 2, ...

    Raises:
        ValueError: `unit_size` is below 1.
        InputError: as for `read_url_list`.
    """
    if unit_size < 1:
        raise ValueError(f"unit_size must be at least 1, got {unit_size}")
    entries = read_url_list(path, url_column, caption_column)
    for number in itertools.count():
        unit = list(itertools.islice(entries, unit_size))
        if not unit:
            return
        yield number, unit


def list_format(path: str) -> str:
    """`parquet`, `tsv` or `csv`, from the file name; InputError for anything else."""
    name = path.lower()
    for suffix, kind in FORMATS.items():
        if name.endswith(suffix):
            return kind
    raise InputError(f"url list {path}: unknown format; expected a name ending in {', '.join(FORMATS)}")


def _normalised_url(url: str) -> str:
    """The URL as `html.resolve_url` gives it (trimmed, normalised); "" stays ""."""
    if not url.strip():
        return ""
    try:
        return resolve_url("", url)
    except ValueError:  # e.g. an unbalanced IPv6 bracket: kept, the download names the failure
        return url.strip()


def _url_caption_rows(path: str, url_column: str, caption_column: str) -> Iterator[tuple[str, str]]:
    kind = list_format(path)
    stream = _open(path)
    try:
        if kind == "parquet":
            yield from _parquet_rows(stream, path, url_column, caption_column)
        else:
            yield from _delimited_rows(stream, path, kind, url_column, caption_column)
    finally:
        stream.close()


def _open(path: str) -> BinaryIO:
    """Opens `path` for reading through Beam's file systems, gunzipping `.gz` names.

    Python's `gzip` (not Beam's decompression) reads the `.gz` files because it raises on
    a truncated file instead of ending quietly.
    """
    try:
        if not FileSystems.exists(path):
            raise InputError(f"url list {path}: no such file")
        raw = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    except InputError:
        raise
    except Exception as e:  # each Beam file system (local, GCS, ...) fails in its own way
        raise InputError(f"url list {path}: cannot be opened: {e}") from e
    return gzip.GzipFile(fileobj=raw, mode="rb") if path.lower().endswith(".gz") else raw


def _pick_column(path: str, found: list[str], wanted: str, known: tuple[str, ...], kind: str) -> str | None:
    """The column to read: `wanted` when given (it must exist), else the first known name."""
    if wanted:
        if wanted not in found:
            raise InputError(f"url list {path}: no {kind} column {wanted!r}; columns found: {found}")
        return wanted
    column = next((name for name in known if name in found), None)
    if column is None and kind == "URL":
        raise InputError(
            f"url list {path}: no URL column; columns found: {found}; looked for: {list(known)}"
            " (or name one with url_column)"
        )
    return column


def _parquet_rows(
    stream: BinaryIO, path: str, url_column: str, caption_column: str
) -> Iterator[tuple[str, str]]:
    try:
        parquet = pyarrow.parquet.ParquetFile(stream)
    except (pyarrow.ArrowException, OSError) as e:
        raise InputError(f"url list {path}: not a readable parquet file: {e}") from e
    found = list(parquet.schema_arrow.names)
    url_name = _pick_column(path, found, url_column, URL_COLUMNS, "URL")
    caption_name = _pick_column(path, found, caption_column, CAPTION_COLUMNS, "caption")
    columns = [url_name] + ([caption_name] if caption_name else [])
    batches = parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=columns)
    rows_read = 0
    while True:
        try:
            batch = next(batches, None)
        except (pyarrow.ArrowException, OSError) as e:
            raise InputError(f"url list {path}: unreadable after row {rows_read}: {e}") from e
        if batch is None:
            return
        urls = batch.column(0).to_pylist()
        captions = batch.column(1).to_pylist() if caption_name else [None] * len(urls)
        rows_read += len(urls)
        yield from zip(map(_cell_text, urls), map(_cell_text, captions), strict=True)


def _cell_text(value: object) -> str:
    if isinstance(value, bytes):  # a binary column
        return value.decode("utf-8", errors="replace")
    return "" if value is None else str(value)


def _delimited_rows(
    stream: BinaryIO, path: str, kind: str, url_column: str, caption_column: str
) -> Iterator[tuple[str, str]]:
    lines = _text_lines(stream, path)
    # csv's default cap (128 KiB a field) would end the whole list at one over-long URL; a
    # field may be as long as a line (a longer one still ends it: memory stays bounded)
    csv.field_size_limit(max(csv.field_size_limit(), MAX_LINE_BYTES))
    if kind == "tsv":
        reader = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(lines)
    rows = _non_blank_rows(reader, path)
    head = list(itertools.islice(rows, HEADER_PEEK_ROWS))
    if not head:
        return
    columns = _header_less_columns(path, head, url_column, caption_column)
    if columns is None:
        header = [cell.strip() for cell in head[0]]
        url_at = header.index(_pick_column(path, header, url_column, URL_COLUMNS, "URL"))
        caption_name = _pick_column(path, header, caption_column, CAPTION_COLUMNS, "caption")
        caption_at = header.index(caption_name) if caption_name else None
        head = head[1:]
    else:
        url_at, caption_at = columns
    for row in itertools.chain(head, rows):
        yield _cell(row, url_at), _cell(row, caption_at)


def _header_less_columns(
    path: str, head: list[list[str]], url_column: str, caption_column: str
) -> tuple[int, int | None] | None:
    """(URL column, caption column) of a list without a header row; None when its first
    row is a header (see the module docstring)."""
    first = [cell.strip() for cell in head[0]]
    has_url = any(_is_http(cell) for cell in first)
    if url_column or caption_column:
        if has_url and url_column not in first:
            raise InputError(f"url list {path}: has no header row, so columns cannot be named")
        return None
    if any(name in first for name in URL_COLUMNS):
        return None
    found = next(((row, i) for row in head for i, cell in enumerate(row) if _is_http(cell)), None)
    if found is None:
        return None  # no URL anywhere: a header without a known URL column, named as such
    row, url_at = found
    if url_at < len(first) and _COLUMN_NAME.fullmatch(first[url_at]):
        return None  # a header naming the URL column otherwise
    return url_at, next((i for i in range(len(row)) if i != url_at), None)


def _is_http(cell: str) -> bool:
    return cell.strip().lower().startswith(("http://", "https://"))


def _cell(row: list[str], at: int | None) -> str:
    return row[at] if at is not None and at < len(row) else ""


def _text_lines(stream: BinaryIO, path: str) -> Iterator[str]:
    """The file's lines as text, each given only once the next read succeeded, so that a
    truncated `.gz` raises before its cut last line is read as a row."""
    previous, number = b"", 0
    while True:
        try:
            line = stream.readline(MAX_LINE_BYTES + 1)
        except (OSError, EOFError, zlib.error) as e:
            raise InputError(f"url list {path}: unreadable after line {number}: {e}") from e
        if len(line) > MAX_LINE_BYTES:
            too_long = number + (2 if previous else 1)
            raise InputError(f"url list {path}: line {too_long} is longer than {MAX_LINE_BYTES} bytes")
        if previous:
            number += 1
            try:
                # utf-8-sig drops the byte-order mark that spreadsheet exports put first
                yield previous.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise InputError(f"url list {path}: line {number} is not UTF-8: {e}") from e
        if not line:
            return
        previous = line


def _non_blank_rows(reader: _csv.Reader, path: str) -> Iterator[list[str]]:
    """The rows of a csv reader without blank lines; parsing errors as InputError."""
    while True:
        try:
            row = next(reader, None)
        except csv.Error as e:
            raise InputError(f"url list {path}: unreadable at line {reader.line_num}: {e}") from e
        if row is None:
            return
        if any(cell.strip() for cell in row):
            yield row
