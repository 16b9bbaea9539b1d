"""The search server over real HTTP on 127.0.0.1: each search against exact search with the
model's own signatures, bad requests answered 4xx in one line, and the server still up after."""

from __future__ import annotations

import base64
import http.client
import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from alignpipe.search.corpus_index import CorpusIndex
from alignpipe.serving.embedder import QueryEmbedder
from alignpipe.serving.http_app import build_app
from alignpipe.serving.queries import QueryLimits
from alignpipe.serving.search_service import SearchService
from tests.serving.conftest import post_json, running_app
from tests.serving.test_queries import bomb_png, png

LIMITS = QueryLimits(max_image_bytes=200_000, max_image_pixels=1_000_000, max_text_chars=200)


@pytest.fixture(scope="module")
def embedder(model_dir) -> QueryEmbedder:
    return QueryEmbedder.load(model_dir)


@pytest.fixture(scope="module")
def index(index_dir) -> CorpusIndex:
    return CorpusIndex.load(index_dir)


@pytest.fixture(scope="module")
def url(embedder, index):
    with running_app(build_app(SearchService(embedder, index, LIMITS))) as base:
        yield base


def b64(data: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(data).decode()}


def get(url: str) -> tuple[int, bytes, dict]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def ranking(index: CorpusIndex, query: np.ndarray, k: int) -> list[int]:
    """Exact search: the `k` item ids of the highest cosine similarity, best first."""
    return [int(i) for i in np.argsort(-(index.images @ query), kind="stable")[:k]]


def test_text_to_images_is_exact_search_with_the_models_text_embedding(url, index, signatures):
    _, embed_texts = signatures
    status, answer = post_json(f"{url}/search/text-to-images", {"text": "a green triangle", "k": 7})
    assert status == 200 and answer["search"] == "text-to-images"
    query = embed_texts(["a green triangle"])[0]
    results = answer["results"]
    assert [r["item_id"] for r in results] == ranking(index, query, 7)
    np.testing.assert_allclose(
        [r["score"] for r in results], index.images[ranking(index, query, 7)] @ query, atol=1e-5
    )
    first = index.items[results[0]["item_id"]]
    assert results[0] | {"score": 0} == {
        "item_id": results[0]["item_id"],
        "score": 0,
        "image_url": first.image_url,
        "page_url": first.page_url,
        "alt_texts": list(first.texts),
        "text": None,
        "thumbnail": f"/thumbnails/{results[0]['item_id']}",
    }
    nearest = answer["nearest_texts"]
    assert len(nearest) == 5 and [t["score"] for t in nearest] == sorted(
        (t["score"] for t in nearest), reverse=True
    )
    assert nearest[0]["text"] in index.items[nearest[0]["item_id"]].texts


def test_an_indexed_image_finds_itself_and_its_alt_texts(url, index, retrieval_images):
    data, alts, _ = retrieval_images[3]
    status, answer = post_json(f"{url}/search/image-to-images", {"image": b64(data), "k": 3})
    assert status == 200
    assert answer["results"][0]["item_id"] == 3 and answer["results"][0]["score"] == pytest.approx(
        1, abs=1e-4
    )
    status, answer = post_json(f"{url}/search/image-to-texts", {"image": b64(data), "k": 4})
    assert status == 200 and "nearest_texts" not in answer and len(answer["results"]) == 4
    for hit in answer["results"]:
        assert hit["text"] in index.items[hit["item_id"]].texts
        row = np.flatnonzero(index.text_items == hit["item_id"])[
            list(index.items[hit["item_id"]].texts).index(hit["text"])
        ]
        assert hit["score"] == pytest.approx(float(index.texts[row] @ index.images[3]), abs=1e-5)


def test_image_plus_text_searches_the_weighted_sum(url, index, retrieval_images, signatures):
    embed_images, embed_texts = signatures
    data = retrieval_images[5][0]
    image, text = embed_images([data])[0], embed_texts(["an orange diamond"])[0]
    for image_weight, text_weight in ((1.0, 1.0), (0.2, 0.8), (1.0, 0.0)):
        body = {"image": b64(data), "text": "an orange diamond", "k": 6}
        body |= {"image_weight": image_weight, "text_weight": text_weight}
        status, answer = post_json(f"{url}/search/image-text-to-images", body)
        query = image_weight * image + text_weight * text
        query /= np.linalg.norm(query)
        assert status == 200 and [r["item_id"] for r in answer["results"]] == ranking(index, query, 6)
    assert answer["results"][0]["item_id"] == 5  # the text weighs nothing: the image itself


LONG = "a " * 5000  # 10,000 characters


@pytest.mark.parametrize(
    ("route", "body", "status", "message"),
    [
        ("search/text-to-images", b"{not json", 400, "request body is not JSON"),
        ("search/text-to-images", b"[]", 400, "request body must be a JSON object, not list"),
        ("search/text-to-images", {"text": ""}, 400, "text is empty"),
        ("search/text-to-images", {"text": LONG}, 400, "text has 10000 characters, over the limit of 200"),
        ("search/image-to-images", {"image": b64(b"%PDF-1.7 not an image")}, 400, "image is not a JPEG, PNG"),
        ("search/image-to-images", {"image": b64(png(1001, 1000))}, 413, "over the limit of 1000000 pixels"),
        (
            "search/image-to-images",
            {"image": b64(bomb_png(60_000, 60_000))},
            413,
            "over the limit of 1000000 p",
        ),
        (
            "search/image-to-images",
            {"image": b64(b"\xff\xd8\xff" + bytes(200_001))},
            413,
            "image has 200004 bytes",
        ),
        ("search/image-to-images", {"text": "a"}, 400, "unknown field 'text'"),
        ("search/everything", {"text": "a"}, 404, "unknown search 'everything'"),
        ("predict", {"instances": [{"text": "a"}, {"image": "x"}]}, 400, "instances[1].image must be {"),
        ("predict", {"instances": [{"text": LONG}]}, 400, "instances[0].text has 10000 characters"),
        ("predict", {"instances": [{"text": "a"}], "parameters": {"k": 0}}, 400, "k must be an integer"),
        ("no/such/route", {}, 404, "POST /no/such/route: Not Found"),
    ],
)
def test_a_bad_request_is_a_4xx_with_one_line_and_the_server_stays_up(url, route, body, status, message):
    got, answer = post_json(f"{url}/{route}", body)
    assert (got, list(answer)) == (status, ["error"])
    assert message in answer["error"] and "\n" not in answer["error"] and "Traceback" not in answer["error"]
    assert get(f"{url}/health")[:2] == (200, b'{"status":"ok"}')


def raw_post(url: str, path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, dict]:
    """A POST with exactly these headers and body bytes; (status, JSON answer)."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.putrequest("POST", path)
    for name, value in headers.items():
        connection.putheader(name, value)
    connection.endheaders(body)
    response = connection.getresponse()
    answer = (response.status, json.loads(response.read()))
    connection.close()
    return answer


def test_a_body_over_the_limit_is_refused_before_it_is_read_whole(url):
    limit = LIMITS.max_request_bytes
    refused = (413, {"error": f"request body is over the limit of {limit} bytes"})
    # By its Content-Length: answered before a byte of the body is sent.
    assert raw_post(url, "/predict", {"Content-Length": str(limit + 1)}) == refused
    # Without one (chunked): counted as it streams in.
    chunk = b" " * 65536
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(limit // len(chunk) + 1))
    assert raw_post(url, "/predict", {"Transfer-Encoding": "chunked"}, chunks + b"0\r\n\r\n") == refused
    assert get(f"{url}/health")[0] == 200


def test_a_get_on_a_post_route_is_a_405_in_one_line(url):
    status, body, _ = get(f"{url}/predict")
    assert (status, json.loads(body)) == (405, {"error": "GET /predict: Method Not Allowed"})


def test_thumbnails_redirect_to_the_items_image_without_a_stored_one(url, index, retrieval_images):
    status, body, _ = get(f"{url}/thumbnails/2")  # urllib follows the redirect to the site
    assert (status, body) == (200, retrieval_images[2][0])
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.request("GET", "/thumbnails/2")
    response = connection.getresponse()
    assert (response.status, response.headers["location"]) == (307, index.items[2].image_url)
    connection.close()
    status, body, _ = get(f"{url}/thumbnails/{len(index)}")
    assert (status, json.loads(body)) == (
        404,
        {"error": f"no item {len(index)}: the index holds items 0 to 39"},
    )
    assert get(f"{url}/thumbnails/x")[0] == 400


class IndexWithThumbnails(CorpusIndex):
    """An index that keeps a small JPEG of each item (what the index stage writes)."""

    def thumbnail(self, item_id: int) -> bytes | None:
        return b"\xff\xd8\xff thumbnail %d" % item_id if item_id % 2 == 0 else None


def test_a_stored_thumbnail_is_served_as_a_jpeg(embedder, index_dir, index):
    stored = IndexWithThumbnails.load(index_dir)
    with running_app(build_app(SearchService(embedder, stored, LIMITS))) as base:
        status, body, headers = get(f"{base}/thumbnails/4")
        assert (status, body, headers["content-type"]) == (200, b"\xff\xd8\xff thumbnail 4", "image/jpeg")
        host, port = base.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        connection.request("GET", "/thumbnails/5")  # none stored: the item's own image
        response = connection.getresponse()
        assert (response.status, response.headers["location"]) == (307, index.items[5].image_url)
        connection.close()


def test_the_page_and_its_files_are_served_from_the_package(url):
    status, body, headers = get(f"{url}/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b'id="query-text"' in body and b'id="image-input"' in body and b"http" not in body
    for name, kind in (("search.js", "text/javascript"), ("search.css", "text/css")):
        status, body, headers = get(f"{url}/page/{name}")
        assert status == 200 and headers["content-type"].startswith(kind) and body
    assert get(f"{url}/page/index.html")[0] == 404
    assert get(f"{url}/page/..%2F__init__.py")[0] == 404
    assert get(f"{url}/page/missing.js")[0] == 404
    status, body, _ = get(f"{url}/info")
    assert json.loads(body)["items"] == 40 and status == 200


def test_predictions_with_an_index_carry_the_nearest_images(url, index, signatures):
    _, embed_texts = signatures
    status, answer = post_json(
        f"{url}/predict", {"instances": [{"text": "a red circle"}], "parameters": {"k": 4}}
    )
    (prediction,) = answer["predictions"]
    query = embed_texts(["a red circle"])[0]
    np.testing.assert_allclose(prediction["embedding"], query, atol=1e-5)
    assert [hit["item_id"] for hit in prediction["images"]] == ranking(index, query, 4)


def test_without_an_index_searches_are_refused_and_predictions_answered(embedder):
    with running_app(build_app(SearchService(embedder, None, LIMITS))) as base:
        status, answer = post_json(f"{base}/search/text-to-images", {"text": "a cat"})
        assert (status, answer) == (
            404,
            {"error": "no index: the server was started without --index (predictions only)"},
        )
        status, answer = post_json(f"{base}/predict", {"instances": [{"text": "a cat"}]})
        assert status == 200 and list(answer["predictions"][0]) == ["embedding"]


class BrokenEmbedder:
    """A model whose text tower fails as a bug would: not the request's fault."""

    dim = 16

    def embed_texts(self, texts):
        raise RuntimeError("the text tower failed")


def test_a_failure_of_the_server_is_a_500_in_one_line_and_the_server_stays_up(index):
    with running_app(build_app(SearchService(BrokenEmbedder(), index, LIMITS))) as base:
        status, answer = post_json(f"{base}/search/text-to-images", {"text": "a cat"})
        assert (status, answer) == (500, {"error": "internal error: RuntimeError: the text tower failed"})
        assert get(f"{base}/health")[0] == 200


def test_concurrent_searches_all_answer(url):
    def one(i: int) -> int:
        return post_json(f"{url}/search/text-to-images", {"text": f"shape number {i}", "k": 3})[0]

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(one, range(32))) == [200] * 32
