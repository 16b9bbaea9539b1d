"""One work unit's output files: TFRecord pairs, and img2dataset-style exports.

A unit `u` of `n` writes, into a folder:

| file                                  | what                                                   |
|---------------------------------------|--------------------------------------------------------|
| `pairs-UUUUU-of-NNNNN.tfrecord.gz`    | `ImageTextPair` examples (`alignpipe.data.records`)    |
| `webdataset/UUUUU.tar`                | img2dataset's webdataset layout: `KEY.jpg`/`.png`/..., |
|                                       | `KEY.txt` (caption), `KEY.json` (metadata)             |
| `parquet/UUUUU.parquet`               | img2dataset's parquet layout: metadata columns and the |
|                                       | image bytes (`parquet_image_column`: `jpg` or `image`) |

`KEY` is img2dataset's: the unit number and the pair's index in it, `UUUUUIIII`. Each
file is written under a temporary name and renamed when complete, so a killed unit
leaves no partial file under a final name.
"""

from __future__ import annotations

import io
import json
import tarfile
import time

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from alignpipe import fs
from alignpipe.data.records import SHARD_PREFIX, SHARD_SUFFIX, ImageTextPair, TFRecordWriter

PARQUET_ROW_GROUP = 256  # rows buffered before a row group is written: memory stays bounded
EXTENSIONS = {"jpeg": "jpg", "png": "png", "gif": "gif", "webp": "webp", "bmp": "bmp"}
_PARQUET_METADATA = pa.schema(
    [
        ("key", pa.string()),
        ("url", pa.string()),
        ("caption", pa.string()),
        ("page_url", pa.string()),
        ("status", pa.string()),
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("original_width", pa.int64()),
        ("original_height", pa.int64()),
        ("sha256", pa.string()),
        ("format", pa.string()),
    ]
)


def parquet_image_column(resize_mode: str) -> str:
    """The name of the parquet export's image column for `scrape.resize_mode`.

    img2dataset names the column after its `encode_format` (`jpg` by default) and re-encodes
    every image into that format, whatever its `resize_mode`. Here `center_crop` re-encodes
    every image as a JPEG, so its column is `jpg`; `no` keeps each download's own bytes and
    `keep_ratio` keeps those already small enough, so theirs is `image`, and the `format`
    column names each row's format (`jpeg`, `png`, ...).
    """
    return "jpg" if resize_mode == "center_crop" else "image"


def unit_name(unit: int, num_units: int) -> str:
    return f"{unit:05d}-of-{num_units:05d}"


def unit_files(folder: str, unit: int, num_units: int, formats: tuple[str, ...]) -> dict[str, str]:
    """Final paths of a unit's files, by format."""
    files = {"tfrecord": fs.join(folder, f"{SHARD_PREFIX}-{unit_name(unit, num_units)}{SHARD_SUFFIX}")}
    if "webdataset" in formats:
        files["webdataset"] = fs.join(folder, "webdataset", f"{unit:05d}.tar")
    if "parquet" in formats:
        files["parquet"] = fs.join(folder, "parquet", f"{unit:05d}.parquet")
    return files


class UnitWriter:
    """Writes one unit's pairs in every configured format; `close()` makes them final.

    `image_column` names the parquet export's image column (`parquet_image_column`).
    """

    def __init__(
        self, folder: str, unit: int, num_units: int, formats: tuple[str, ...], image_column: str
    ) -> None:
        self.unit = unit
        self.image_column = image_column
        self.files = unit_files(folder, unit, num_units, formats)
        for path in self.files.values():
            fs.makedirs(path.rsplit("/", 1)[0])
        self._handles = {k: FileSystems.create(p + ".tmp") for k, p in self.files.items()}
        self._records = TFRecordWriter(self._handles["tfrecord"])
        self._tar = (
            tarfile.open(fileobj=self._handles["webdataset"], mode="w") if "webdataset" in formats else None
        )
        self._parquet = None
        if "parquet" in formats:
            self._schema = _PARQUET_METADATA.append(pa.field(image_column, pa.binary()))
            self._parquet = pq.ParquetWriter(self._handles["parquet"], self._schema)
        self._rows: list[dict[str, object]] = []
        self.count = 0

    def write(self, pair: ImageTextPair) -> None:
        key = f"{self.unit:05d}{self.count:04d}"
        self.count += 1
        self._records.write(pair.to_example())
        meta = {
            "key": key,
            "url": pair.image_url,
            "caption": pair.text,
            "page_url": pair.page_url,
            "status": "success",
            "width": pair.width,
            "height": pair.height,
            "original_width": pair.original_width or pair.width,
            "original_height": pair.original_height or pair.height,
            "sha256": pair.sha256,
            "format": pair.image_format,
        }
        if self._tar is not None:
            ext = EXTENSIONS[pair.image_format]
            for name, data in (
                (f"{key}.{ext}", pair.image_bytes),
                (f"{key}.txt", pair.text.encode("utf-8")),
                (f"{key}.json", json.dumps(meta, sort_keys=True).encode("utf-8")),
            ):
                info = tarfile.TarInfo(name)
                info.size, info.mtime = len(data), int(time.time())
                self._tar.addfile(info, io.BytesIO(data))
        if self._parquet is not None:
            if self.image_column == "jpg" and pair.image_format != "jpeg":
                raise ValueError(f"a {pair.image_format} image cannot go into the parquet column jpg")
            self._rows.append(meta | {self.image_column: pair.image_bytes})
            if len(self._rows) >= PARQUET_ROW_GROUP:
                self._flush_rows()

    def _flush_rows(self) -> None:
        if self._parquet is not None and self._rows:
            self._parquet.write_table(pa.Table.from_pylist(self._rows, schema=self._schema))
        self._rows = []

    def close(self) -> list[str]:
        """Finishes every file and moves it to its final name; returns the final paths."""
        self._records.close()
        if self._tar is not None:
            self._tar.close()
        if self._parquet is not None:
            self._flush_rows()
            self._parquet.close()
        for handle in self._handles.values():
            handle.close()
        for path in self.files.values():
            if fs.exists(path):
                FileSystems.delete([path])
            FileSystems.rename([path + ".tmp"], [path])
        return list(self.files.values())

    def abort(self) -> None:
        if self._parquet is not None:
            self._parquet.close()  # before its file: pyarrow would close it later, on a closed file
        for handle in self._handles.values():
            handle.close()
        FileSystems.delete([p + ".tmp" for p in self.files.values() if fs.exists(p + ".tmp")])
