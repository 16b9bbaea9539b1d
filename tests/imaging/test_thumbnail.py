import io

from PIL import Image

from alignpipe.imaging.thumbnail import make_thumbnail


def _encoded(size, mode="RGB", fmt="PNG"):
    out = io.BytesIO()
    Image.new(mode, size, 90).save(out, fmt)
    return out.getvalue()


def test_longest_side_is_capped_and_small_images_keep_their_size():
    for size, expected in (((640, 320), (160, 80)), ((90, 1000), (14, 160)), ((40, 30), (40, 30))):
        with Image.open(io.BytesIO(make_thumbnail(_encoded(size)))) as thumb:
            assert thumb.format == "JPEG" and thumb.mode == "RGB" and thumb.size == expected


def test_palette_and_alpha_images_become_rgb_jpegs():
    for mode, fmt in (("P", "GIF"), ("RGBA", "PNG"), ("L", "JPEG")):
        with Image.open(io.BytesIO(make_thumbnail(_encoded((300, 200), mode, fmt)))) as thumb:
            assert thumb.format == "JPEG" and thumb.mode == "RGB" and thumb.size == (160, 107)


def test_non_images_truncated_files_and_oversized_images_have_none():
    data = _encoded((300, 200), fmt="JPEG")
    assert make_thumbnail(b"<html>not an image</html>") is None
    assert make_thumbnail(data[:40]) is None
    assert make_thumbnail(data, max_pixels=300 * 200 - 1) is None
    assert make_thumbnail(data, max_pixels=300 * 200) is not None
