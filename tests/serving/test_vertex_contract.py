"""The serving container's contract with Vertex AI: `alignpipe serve` started as Vertex AI starts
it, with the model in Cloud Storage (an emulator on 127.0.0.1) at `AIP_STORAGE_URI` and only
environment variables to go by, answers the health route and Vertex-shaped predictions with
the embeddings of the model's own signatures."""

from __future__ import annotations

import base64
import os

import numpy as np
import pytest

from alignpipe import fs
from alignpipe.model.export import SAVED_MODEL_DIR
from tests.serving.conftest import free_socket, post_json, serve_process

ENDPOINT = "/v1/endpoints/1234/deployedModels/5678"  # the routes Vertex AI gives a deployed model


def upload_folder(local: str, uri: str) -> None:
    for folder, _, files in os.walk(local):
        for name in files:
            relative = os.path.relpath(os.path.join(folder, name), local)
            with open(os.path.join(folder, name), "rb") as f:
                fs.write_bytes(fs.join(uri, *relative.split(os.sep)), f.read())


@pytest.mark.large
def test_health_and_predict_on_vertex_ai_s_routes_give_the_models_embeddings(
    gcs_bucket, model_dir, signatures, retrieval_images
):
    # What the Model Registry upload names as the artifact: the SavedModel folder itself.
    storage_uri = f"{gcs_bucket}/models/align/1/{SAVED_MODEL_DIR}"
    upload_folder(os.path.join(model_dir, SAVED_MODEL_DIR), storage_uri)
    with free_socket() as sock:
        port = sock.getsockname()[1]
    env = {
        "AIP_HTTP_PORT": str(port),
        "AIP_HEALTH_ROUTE": ENDPOINT,
        "AIP_PREDICT_ROUTE": f"{ENDPOINT}:predict",
        "AIP_STORAGE_URI": storage_uri,
    }
    base = f"http://127.0.0.1:{port}"
    # --host keeps the test on 127.0.0.1; the container binds every interface under AIP_HTTP_PORT.
    with serve_process(["--host", "127.0.0.1"], env, base + ENDPOINT):
        images = [data for data, _, _ in retrieval_images[:3]]
        texts = ["a green triangle above an orange diamond", "ein Hund", "x" * 1000]
        instances = [{"text": texts[0]}, {"image": {"b64": base64.b64encode(images[0]).decode()}}]
        instances += [{"text": texts[1]}, {"text": texts[2]}]
        instances += [{"image": {"b64": base64.b64encode(data).decode()}} for data in images[1:]]
        status, answer = post_json(f"{base}{ENDPOINT}:predict", {"instances": instances})
        assert status == 200 and list(answer) == ["predictions"]
        assert all(list(p) == ["embedding"] for p in answer["predictions"])  # no index: embeddings only
        got = np.array([p["embedding"] for p in answer["predictions"]], np.float32)
        embed_images, embed_texts = signatures
        want_texts, want_images = embed_texts(texts), embed_images(images)
        want = np.stack([want_texts[0], want_images[0], want_texts[1], want_texts[2], *want_images[1:]])
        np.testing.assert_allclose(got, want, atol=1e-5)

        status, answer = post_json(
            f"{base}{ENDPOINT}:predict", {"instances": [{"image": {"b64": "bm90IGFuIGltYWdl"}}]}
        )
        assert (status, answer) == (
            400,
            {"error": "instances[0].image is not a JPEG, PNG, GIF, WebP or BMP file (starts b'not an i')"},
        )
        assert (
            post_json(f"{base}/predict", {"instances": [{"text": "a"}]})[0] == 404
        )  # only Vertex AI's route
