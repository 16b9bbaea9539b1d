"""`alignpipe.serving.queries`: what a request may hold, refused in one line with its status."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from alignpipe.serving.queries import (
    QueryError,
    QueryLimits,
    combine,
    parse_instances,
    parse_json_object,
    parse_query,
)

LIMITS = QueryLimits(max_image_bytes=20_000, max_image_pixels=10_000, max_text_chars=50, max_k=20)


def png(width: int = 20, height: int = 10) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


def bomb_png(width: int, height: int) -> bytes:
    """A PNG whose header declares `width` x `height` but holds a few bytes of data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def b64(data: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(data).decode()}


def refusal(call, *args, **kwargs) -> tuple[int, str]:
    with pytest.raises(QueryError) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return info.value.status, message


def test_a_text_query_and_an_image_query_are_read():
    query = parse_query({"text": "a red square", "k": 5}, LIMITS, text=True, image=False)
    assert (query.text, query.image, query.k) == ("a red square", None, 5)
    query = parse_query({"image": b64(png())}, LIMITS, text=False, image=True)
    assert (query.text, query.image, query.k) == (None, png(), 10)
    query = parse_query(
        {"image": b64(png()), "text": "in snow", "text_weight": 0.25, "image_weight": 2},
        LIMITS,
        text=True,
        image=True,
    )
    assert (query.image_weight, query.text_weight) == (2.0, 0.25)


@pytest.mark.parametrize(
    ("body", "text", "image", "status", "message"),
    [
        ({"text": ""}, True, False, 400, "text is empty"),
        ({"text": "   "}, True, False, 400, "text is empty"),
        ({"text": "x" * 51}, True, False, 400, "text has 51 characters, over the limit of 50"),
        ({"text": 7}, True, False, 400, "text must be a string, not int"),
        ({}, True, False, 400, "missing field 'text'"),
        ({"text": "a", "image": b64(png())}, True, False, 400, "unknown field 'image'"),
        ({"text": "a", "k": 0}, True, False, 400, "k must be an integer from 1 to 20, not 0"),
        ({"text": "a", "k": 21}, True, False, 400, "k must be an integer from 1 to 20"),
        ({"text": "a", "k": True}, True, False, 400, "k must be an integer"),
        ({"text": "a", "k": "5"}, True, False, 400, "k must be an integer"),
        ({"image": "abc"}, False, True, 400, 'image must be {"b64": '),
        ({"image": {"b64": "@@@@"}}, False, True, 400, "image.b64 is not base64"),
        ({"image": b64(b"")}, False, True, 400, "image is empty"),
        (
            {"image": b64(b"GIF89a, and then nothing of an image")},
            False,
            True,
            400,
            "image cannot be decoded",
        ),
        ({"image": b64(b"<html>not an image</html>")}, False, True, 400, "image is not a JPEG, PNG"),
        ({"image": b64(png()[:-30])}, False, True, 400, "image cannot be decoded"),
        ({"image": b64(b"\xff\xd8\xff" + bytes(20_000))}, False, True, 413, "image has 20003 bytes, over"),
        (
            {"image": b64(bomb_png(100_000, 100_000))},
            False,
            True,
            413,
            "image is over the limit of 10000 pixels: ",
        ),
        ({"image": b64(png(101, 100))}, False, True, 413, "pixels: 101x100 is over 10000 pixels"),
        (
            {"image": b64(png()), "text": "a", "text_weight": 0, "image_weight": 0},
            True,
            True,
            400,
            "image_weight and text_weight are both 0",
        ),
        (
            {"image": b64(png()), "text": "a", "text_weight": -1},
            True,
            True,
            400,
            "text_weight must be a number",
        ),
        ({"image": b64(png()), "text": "a", "text_weight": "1"}, True, True, 400, "text_weight must be"),
    ],
)
def test_a_bad_query_is_refused_in_one_line(body, text, image, status, message):
    assert refusal(parse_query, body, LIMITS, text=text, image=image)[0] == status
    assert message in refusal(parse_query, body, LIMITS, text=text, image=image)[1]


def test_a_base64_string_over_the_cap_is_refused_before_it_is_decoded():
    status, message = refusal(parse_query, {"image": {"b64": "A" * 40_000}}, LIMITS, text=False, image=True)
    assert (status, message) == (413, "image is over the limit of 20000 bytes")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "request body is not JSON"),
        (b"{'single': 'quotes'}", "request body is not JSON"),
        (b"\xff\xfe", "request body is not JSON"),
        (b"[1, 2]", "request body must be a JSON object, not list"),
        (b'"text"', "request body must be a JSON object, not str"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_refused(body, message):
    assert message in refusal(parse_json_object, body)[1]


def test_prediction_instances_are_read_in_order():
    body = {"instances": [{"text": "a cat"}, {"image": b64(png())}, {"text": "a dog"}]}
    assert parse_instances(body, LIMITS) == ["a cat", png(), "a dog"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "instances must be a non-empty list"),
        ({"instances": []}, "instances must be a non-empty list"),
        ({"instances": {"text": "a"}}, "instances must be a non-empty list"),
        ({"instances": [{"text": "a"}] * 65}, "65 instances, over the limit of 64"),
        ({"instances": ["a cat"]}, 'instances[0] must be {"text": "..."} or {"image": {"b64": "..."}}'),
        ({"instances": [{"text": "a", "image": b64(png())}]}, "instances[0] must be"),
        ({"instances": [{"txt": "a"}]}, "instances[0] must be"),
        ({"instances": [{"text": "a"}, {"text": ""}]}, "instances[1].text is empty"),
        ({"instances": [{"image": b64(b"nope")}]}, "instances[0].image is not a JPEG"),
        ({"instances": [{"text": "a"}], "signature": "x"}, "unknown field 'signature'"),
    ],
)
def test_a_bad_prediction_request_names_the_instance(body, message):
    assert message in refusal(parse_instances, body, LIMITS)[1]


def test_the_image_text_query_is_the_normalised_weighted_sum():
    image, text = np.array([1.0, 0.0, 0.0], np.float32), np.array([0.0, 1.0, 0.0], np.float32)
    np.testing.assert_allclose(combine(image, text, 1.0, 1.0), [2**-0.5, 2**-0.5, 0.0], rtol=1e-6)
    np.testing.assert_allclose(combine(image, text, 3.0, 1.0), np.array([3.0, 1.0, 0.0]) / 10**0.5, rtol=1e-6)
    np.testing.assert_allclose(combine(image, text, 0.0, 2.0), text)
    assert refusal(combine, image, -image, 1.0, 1.0)[1].startswith("the weighted sum of the image and text")
