"""Search queries read from untrusted JSON: checked before any of them reaches the model.

Every refusal is a `QueryError` with one line naming the field and the problem, and the HTTP
status it answers with: 400 for a malformed request, 413 for an image over the byte or pixel
cap. An image is checked as the filter checks a scraped one: its magic bytes name a format
the model decodes, its header declares no more than `max_image_pixels` pixels (read before
anything is decoded: a decompression bomb costs nothing; `describe_image`), and it decodes
(`decode_image_facts`).

An image + text query is ALIGN's section 7: the query embedding is the normalised weighted sum
`(w_i * image + w_t * text) / |w_i * image + w_t * text|` of the two unit-norm embeddings.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import math

import numpy as np

from alignpipe.errors import InputError
from alignpipe.imaging.decode import decode_image_facts, describe_image, sniff_format


class QueryError(InputError):
    """A query the server refuses, with the HTTP status of the answer."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclasses.dataclass(frozen=True)
class QueryLimits:
    """What one request may ask of the server.

    Attributes:
        max_image_bytes: an encoded image file's size.
        max_image_pixels: width x height its header may declare.
        max_text_chars: a query text's length (the model reads its first tokens only).
        max_k: results per query.
        max_instances: instances of one prediction request.
    """

    max_image_bytes: int = 10_000_000
    max_image_pixels: int = 50_000_000
    max_text_chars: int = 1000
    max_k: int = 100
    max_instances: int = 64

    @property
    def max_request_bytes(self) -> int:
        """A request body's size: one image at the cap, base64-encoded, and room for the rest."""
        return 4 * math.ceil(self.max_image_bytes / 3) + 1_000_000


@dataclasses.dataclass(frozen=True)
class Query:
    """A checked query: a text, an image file, or both with their weights."""

    text: str | None = None
    image: bytes | None = None
    image_weight: float = 1.0
    text_weight: float = 1.0
    k: int = 10


def parse_json_object(body: bytes) -> dict:
    """The request body as a JSON object."""
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise QueryError(f"request body is not JSON: {e}") from None
    if not isinstance(value, dict):
        raise QueryError(f"request body must be a JSON object, not {type(value).__name__}")
    return value


def check_text(value: object, limits: QueryLimits, field: str = "text") -> str:
    """A non-blank string of at most `max_text_chars` characters."""
    if not isinstance(value, str):
        raise QueryError(f"{field} must be a string, not {type(value).__name__}")
    if not value.strip():
        raise QueryError(f"{field} is empty")
    if len(value) > limits.max_text_chars:
        raise QueryError(f"{field} has {len(value)} characters, over the limit of {limits.max_text_chars}")
    return value


def check_image(value: object, limits: QueryLimits, field: str = "image") -> bytes:
    """`{"b64": BASE64}` (Vertex AI's form for binary data) -> the checked image file."""
    if not isinstance(value, dict) or set(value) != {"b64"} or not isinstance(value["b64"], str):
        raise QueryError(f'{field} must be {{"b64": "<base64 of an image file>"}}')
    encoded = value["b64"]
    if len(encoded) > 4 * math.ceil(limits.max_image_bytes / 3) + 4:
        raise QueryError(f"{field} is over the limit of {limits.max_image_bytes} bytes", 413)
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as e:
        raise QueryError(f"{field}.b64 is not base64: {e}") from None
    if len(data) > limits.max_image_bytes:
        raise QueryError(f"{field} has {len(data)} bytes, over the limit of {limits.max_image_bytes}", 413)
    if not data:
        raise QueryError(f"{field} is empty")
    facts = describe_image(data, max_pixels=limits.max_image_pixels)  # the header only
    if facts.outcome == "not_an_image":
        raise QueryError(f"{field} is not a JPEG, PNG, GIF, WebP or BMP file (starts {data[:8]!r})")
    if facts.outcome == "too_many_pixels":
        raise QueryError(f"{field} is over the limit of {limits.max_image_pixels} pixels: {facts.error}", 413)
    decodable, _, _, _ = decode_image_facts(data, limits.max_image_pixels)
    if facts.outcome != "ok" or not decodable:
        raise QueryError(f"{field} cannot be decoded (a truncated or corrupt {sniff_format(data)} file)")
    return data


def _number(body: dict, field: str, default: float, low: float, high: float) -> float:
    value = body.get(field, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise QueryError(f"{field} must be a number from {low} to {high}, not {value!r}")
    return float(value)


def _k(body: dict, limits: QueryLimits) -> int:
    value = body.get("k", 10)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limits.max_k:
        raise QueryError(f"k must be an integer from 1 to {limits.max_k}, not {value!r}")
    return value


def parse_query(body: dict, limits: QueryLimits, *, text: bool, image: bool) -> Query:
    """A search request `{"text"?, "image"?, "k"?, "image_weight"?, "text_weight"?}` with the
    text and / or image its endpoint needs; unknown fields are refused (a typo is not ignored)."""
    allowed = {"k"} | ({"text"} if text else set()) | ({"image"} if image else set())
    if text and image:
        allowed |= {"image_weight", "text_weight"}
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise QueryError(f"unknown field {unknown[0]!r}: this search takes {', '.join(sorted(allowed))}")
    for field, wanted in (("text", text), ("image", image)):
        if wanted and field not in body:
            raise QueryError(f"missing field {field!r}")
    query = Query(
        text=check_text(body["text"], limits) if text else None,
        image=check_image(body["image"], limits) if image else None,
        k=_k(body, limits),
    )
    if text and image:
        weights = {f: _number(body, f, 1.0, 0.0, 1000.0) for f in ("image_weight", "text_weight")}
        if not any(weights.values()):
            raise QueryError("image_weight and text_weight are both 0")
        query = dataclasses.replace(query, **weights)
    return query


def parse_instances(body: dict, limits: QueryLimits) -> list[str | bytes]:
    """A prediction request `{"instances": [{"text": ...} | {"image": {"b64": ...}}, ...],
    "parameters"?: {...}}` -> each instance's text or image file, in order."""
    unknown = sorted(set(body) - {"instances", "parameters"})
    if unknown:
        raise QueryError(f"unknown field {unknown[0]!r}: a prediction request has instances and parameters")
    instances = body.get("instances")
    if not isinstance(instances, list) or not instances:
        raise QueryError("instances must be a non-empty list")
    if len(instances) > limits.max_instances:
        raise QueryError(f"{len(instances)} instances, over the limit of {limits.max_instances}")
    out: list[str | bytes] = []
    for i, instance in enumerate(instances):
        field = f"instances[{i}]"
        if not isinstance(instance, dict) or len(instance) != 1 or not {"text", "image"} & set(instance):
            raise QueryError(f'{field} must be {{"text": "..."}} or {{"image": {{"b64": "..."}}}}')
        if "text" in instance:
            out.append(check_text(instance["text"], limits, f"{field}.text"))
        else:
            out.append(check_image(instance["image"], limits, f"{field}.image"))
    return out


def prediction_k(body: dict, limits: QueryLimits) -> int:
    """`parameters.k` of a prediction request (the nearest images of each instance): default 10."""
    parameters = body.get("parameters", {})
    if not isinstance(parameters, dict):
        raise QueryError("parameters must be a JSON object")
    unknown = sorted(set(parameters) - {"k"})
    if unknown:
        raise QueryError(f"unknown parameter {unknown[0]!r}: predictions take k")
    return _k(parameters, limits)


def combine(image: np.ndarray, text: np.ndarray, image_weight: float, text_weight: float) -> np.ndarray:
    """ALIGN's image + text query: the normalised weighted sum of unit-norm `[D]` embeddings.

    Raises:
        QueryError: the weighted sum is (numerically) zero: the query points nowhere.
    """
    total = image_weight * np.asarray(image, np.float32) + text_weight * np.asarray(text, np.float32)
    norm = float(np.linalg.norm(total))
    if norm < 1e-6:
        raise QueryError("the weighted sum of the image and text embeddings is zero; change the weights")
    return (total / norm).astype(np.float32)
