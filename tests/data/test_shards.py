import hashlib
import io
import os

import pyarrow.parquet as pq
import pytest
from PIL import Image

from alignpipe.data.records import ImageTextPair
from alignpipe.data.shards import UnitWriter, parquet_image_column


def pair(image_format: str, text: str) -> ImageTextPair:
    out = io.BytesIO()
    Image.new("RGB", (8, 6), (200, 10, 10)).save(out, format=image_format.upper())
    data = out.getvalue()
    return ImageTextPair(data, image_format, 8, 6, hashlib.sha256(data).hexdigest(), text, "http://a/", "")


@pytest.mark.parametrize(
    "resize_mode, column", [("no", "image"), ("keep_ratio", "image"), ("center_crop", "jpg")]
)
def test_the_parquet_image_column_is_named_for_what_it_holds(tmp_path, resize_mode, column):
    assert parquet_image_column(resize_mode) == column
    writer = UnitWriter(str(tmp_path), 0, 1, ("tfrecord", "parquet"), column)
    pairs = [pair("jpeg", "a red jpeg")] + ([pair("png", "a red png")] if column == "image" else [])
    for p in pairs:
        writer.write(p)
    (path,) = [f for f in writer.close() if f.endswith(".parquet")]
    table = pq.read_table(path)
    assert table.column_names[-2:] == ["format", column]
    rows = table.to_pylist()
    assert [(r["caption"], r["format"], r[column]) for r in rows] == [
        (p.text, p.image_format, p.image_bytes) for p in pairs
    ]
    assert not os.path.exists(path + ".tmp")


def test_a_jpg_column_refuses_other_formats(tmp_path):
    writer = UnitWriter(str(tmp_path), 0, 1, ("tfrecord", "parquet"), "jpg")
    with pytest.raises(ValueError, match="png image cannot go into the parquet column jpg"):
        writer.write(pair("png", "a red png"))
    writer.abort()
