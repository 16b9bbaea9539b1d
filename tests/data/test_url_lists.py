import gzip

import pyarrow
import pyarrow.parquet
import pytest

from alignpipe.data import url_lists
from alignpipe.data.entries import ImageEntry
from alignpipe.data.url_lists import iter_url_list_units, read_url_list
from alignpipe.errors import InputError


def write(path, text: str, compress: bool = False) -> str:
    data = text.encode("utf-8")
    path.write_bytes(gzip.compress(data) if compress else data)
    return str(path)


def write_parquet(path, columns: dict[str, list]) -> str:
    pyarrow.parquet.write_table(pyarrow.table(columns), str(path), row_group_size=3)
    return str(path)


def read(path: str, **columns) -> list[ImageEntry]:
    return list(read_url_list(path, **columns))


def test_laion_parquet_every_row_one_entry_urls_and_captions_normalised(tmp_path):
    path = write_parquet(
        tmp_path / "laion.parquet",
        {
            "SAMPLE_ID": [1, 2, 3, 4, 5],
            "URL": [
                "http://A.example/x.jpg",
                " https://Bücher.example/Bild 1.png ",
                "",
                "data:image/png;base64,AAAA",
                None,
            ],
            "TEXT": ["  A  red\tcircle\n", None, "no url", "inline", "null url"],
            "WIDTH": [256, 128, 0, 1, 2],
        },
    )
    assert read(path) == [
        ImageEntry("http://a.example/x.jpg", "A red circle"),
        ImageEntry("https://xn--bcher-kva.example/Bild%201.png", ""),
        ImageEntry("", "no url"),
        ImageEntry("data:image/png;base64,AAAA", "inline"),
        ImageEntry("", "null url"),
    ]


def test_coyo_parquet_streams_in_record_batches(tmp_path, monkeypatch):
    monkeypatch.setattr(url_lists, "PARQUET_BATCH_ROWS", 2)
    urls = [f"https://coyo.example/{i}.jpg" for i in range(5)]
    path = write_parquet(
        tmp_path / "coyo.parquet",
        {"id": list(range(5)), "url": urls, "text": [f"photo {i}" for i in range(5)], "clip_sim": [0.3] * 5},
    )
    assert read(path) == [ImageEntry(u, f"photo {i}") for i, u in enumerate(urls)]


def test_tsv_with_header_and_short_and_blank_rows(tmp_path):
    text = "caption\turl\textra\n" + 'a "quoted" dog\thttp://x.example/1.jpg\t7\n' + "\n" + "lonely caption\n"
    assert read(write(tmp_path / "list.tsv", text)) == [
        ImageEntry("http://x.example/1.jpg", 'a "quoted" dog'),
        ImageEntry("", "lonely caption"),
    ]


def test_cc3m_tsv_without_header_is_caption_then_url(tmp_path):
    text = '"Quoted" boat at dusk\thttp://cc3m.example/a.jpg\nsecond  one\thttps://cc3m.example/b.jpg\n'
    assert read(write(tmp_path / "Train_GCC-training.tsv", text)) == [
        ImageEntry("http://cc3m.example/a.jpg", '"Quoted" boat at dusk'),
        ImageEntry("https://cc3m.example/b.jpg", "second one"),
    ]


def test_cc12m_gzipped_tsv_without_header_is_url_then_caption(tmp_path):
    text = "https://cc12m.example/a.jpg\ta <PERSON> on a bike\nhttps://cc12m.example/b.jpg\tmoon\n"
    assert read(write(tmp_path / "cc12m.tsv.gz", text, compress=True)) == [
        ImageEntry("https://cc12m.example/a.jpg", "a <PERSON> on a bike"),
        ImageEntry("https://cc12m.example/b.jpg", "moon"),
    ]


@pytest.mark.parametrize(
    "broken",
    ["", "http://[::1", "www.cc3m.example/a.jpg", "//cc3m.example/a.jpg", "htp://cc3m.example/a.jpg", "N/A"],
)
def test_header_less_list_whose_first_url_is_broken_keeps_every_row(tmp_path, broken):
    text = f"a broken first row\t{broken}\n" + "".join(
        f"caption {i}\thttp://cc3m.example/{i}.jpg\n" for i in range(3)
    )
    assert read(write(tmp_path / "cc3m.tsv", text)) == [
        ImageEntry(broken.strip(), "a broken first row"),
        *(ImageEntry(f"http://cc3m.example/{i}.jpg", f"caption {i}") for i in range(3)),
    ]


def test_url_column_of_a_header_less_list_is_found_past_the_first_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(url_lists, "HEADER_PEEK_ROWS", 3)
    text = "a\t\nb\tnot-a-url\nc\thttps://x.example/c.png\nd\thttps://x.example/d.png\n"
    assert [e.url for e in read(write(tmp_path / "list.tsv", text))] == [
        "",
        "not-a-url",
        "https://x.example/c.png",
        "https://x.example/d.png",
    ]
    late = write(tmp_path / "late.tsv", "a\t\nb\t\nc\t\nd\thttps://x.example/d.png\n")
    assert "no URL column" in error_of(late)  # nothing looks like a URL in the rows read


@pytest.mark.parametrize(
    "name, text",
    [
        ("empty.tsv", ""),
        ("blank.tsv", "\n \n\t\n"),
        ("header.tsv", "url\tcaption\n"),
        ("header.csv.gz", "url,caption\r\n"),
    ],
)
def test_list_without_rows_is_an_error(tmp_path, name, text):
    path = write(tmp_path / name, text, compress=name.endswith(".gz"))
    assert error_of(path) == f"url list {path}: no rows (an empty file, or a header only)"


def test_parquet_without_rows_is_an_error(tmp_path):
    path = write_parquet(tmp_path / "none.parquet", {"url": pyarrow.array([], pyarrow.string())})
    assert error_of(path) == f"url list {path}: no rows (an empty file, or a header only)"


def test_csv_quoting_bom_and_fallback_column_names(tmp_path):
    text = (
        "\ufeffimg_url,alt_text,title\r\n"
        'http://x.example/1.jpg,"comma, and ""quotes""",ignored\r\n'
        'http://x.example/2.jpg,"two\r\nlines",ignored\r\n'
    )
    expected = [
        ImageEntry("http://x.example/1.jpg", 'comma, and "quotes"'),
        ImageEntry("http://x.example/2.jpg", "two lines"),
    ]
    assert read(write(tmp_path / "list.csv", text)) == expected
    assert read(write(tmp_path / "list.csv.gz", text, compress=True)) == expected


def test_named_columns_override_the_known_names(tmp_path):
    path = write(tmp_path / "list.csv", "url,caption,link,desc\nhttp://no/,no,http://y.example/,yes\n")
    assert read(path, url_column="link", caption_column="desc") == [ImageEntry("http://y.example/", "yes")]


def test_list_without_caption_column_gives_empty_alts(tmp_path):
    path = write_parquet(tmp_path / "urls.parquet", {"image_url": ["http://z.example/a.png"]})
    assert read(path) == [ImageEntry("http://z.example/a.png", "")]


def test_units_are_numbered_consecutive_and_deterministic(tmp_path):
    path = write(tmp_path / "list.tsv", "url\n" + "".join(f"http://u.example/{i}\n" for i in range(5)))
    units = list(iter_url_list_units(path, 2))
    assert [(n, [e.url.rsplit("/", 1)[1] for e in unit]) for n, unit in units] == [
        (0, ["0", "1"]),
        (1, ["2", "3"]),
        (2, ["4"]),
    ]
    assert list(iter_url_list_units(path, 2)) == units
    with pytest.raises(ValueError, match="unit_size"):
        next(iter_url_list_units(path, 0))


def error_of(path: str, **columns) -> str:
    with pytest.raises(InputError) as raised:
        read(path, **columns)
    return str(raised.value)


def test_missing_url_column_names_file_columns_and_names_looked_for(tmp_path):
    path = write_parquet(tmp_path / "bad.parquet", {"link": ["http://a/"], "TEXT": ["a"]})
    assert error_of(path) == (
        f"url list {path}: no URL column; columns found: ['link', 'TEXT']; "
        "looked for: ['url', 'URL', 'image_url', 'img_url'] (or name one with url_column)"
    )
    tsv = write(tmp_path / "bad.tsv", "link\tcaption\nfoo\tbar\n")
    assert "no URL column; columns found: ['link', 'caption']" in error_of(tsv)


def test_named_column_missing(tmp_path):
    path = write(tmp_path / "list.csv", "url,caption\nhttp://a/,a\n")
    assert error_of(path, caption_column="desc") == (
        f"url list {path}: no caption column 'desc'; columns found: ['url', 'caption']"
    )


def test_header_less_list_cannot_have_named_columns(tmp_path):
    path = write(tmp_path / "cc3m.tsv", "a cat\thttp://a/\n")
    assert "no header row" in error_of(path, url_column="url")


def test_missing_file_and_unknown_format(tmp_path):
    missing = str(tmp_path / "nope.tsv")
    assert error_of(missing) == f"url list {missing}: no such file"
    json_path = write(tmp_path / "list.json", "[]")
    assert error_of(json_path).startswith(f"url list {json_path}: unknown format; expected a name ending in")


def test_unreadable_files(tmp_path, monkeypatch):
    not_parquet = write(tmp_path / "list.parquet", "url,caption\n")
    assert error_of(not_parquet).startswith(f"url list {not_parquet}: not a readable parquet file")
    latin1 = tmp_path / "latin1.tsv"
    latin1.write_bytes("url\tcaption\nhttp://a/\tcaf\xe9\n".encode("latin-1"))
    assert error_of(str(latin1)).startswith(f"url list {latin1}: line 2 is not UTF-8")
    not_gzip = write(tmp_path / "plain.tsv.gz", "url\nhttp://a/\n")
    assert error_of(not_gzip).startswith(f"url list {not_gzip}: unreadable after line 0")
    monkeypatch.setattr(url_lists, "MAX_LINE_BYTES", 30)
    long_line = write(tmp_path / "long.tsv", "url\nhttp://a/\nhttp://a/" + "x" * 30 + "\n")
    assert error_of(long_line) == f"url list {long_line}: line 3 is longer than 30 bytes"


@pytest.mark.parametrize("name", ["long.tsv", "long.csv"])
def test_an_over_long_url_is_a_row_not_the_end_of_the_list(tmp_path, name):
    long_url = "http://a.example/" + "x" * 200_000  # over csv's default field cap of 128 KiB
    sep = "\t" if name.endswith(".tsv") else ","
    path = write(tmp_path / name, f"url{sep}caption\n{long_url}{sep}long\nhttp://b.example/{sep}short\n")
    assert read(path) == [ImageEntry(long_url, "long"), ImageEntry("http://b.example/", "short")]


def test_truncated_gzip_raises_after_the_whole_rows_before_the_cut(tmp_path):
    rows = "".join(f"https://t.example/{i:05d}.jpg\tcaption number {i * 7919 % 10007}\n" for i in range(3000))
    data = gzip.compress(("url\tcaption\n" + rows).encode())
    path = tmp_path / "cut.tsv.gz"
    path.write_bytes(data[: len(data) // 2])
    entries = []
    with pytest.raises(
        InputError, match=rf"url list {path}: unreadable after line \d+: Compressed file ended"
    ):
        for entry in read_url_list(str(path)):
            entries.append(entry)
    assert 0 < len(entries) < 3000
    assert entries == [
        ImageEntry(f"https://t.example/{i:05d}.jpg", f"caption number {i * 7919 % 10007}")
        for i in range(len(entries))
    ]
