"""The registered champion loads and embeds in an environment without this project."""

from __future__ import annotations

import io
import json
import os
import subprocess

import numpy as np
import pytest
from PIL import Image

from alignpipe.model.encoder import AlignEncoder
from components.registry import MODEL_DISTRIBUTIONS
from tests.pipelines.bare_env import make_bare_venv
from tests.pipelines.conftest import model_dir_of

# One worker runs the pipeline (a session fixture) for every test that reads it.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

# What the registered model's requirements name, and MLflow to load it.
PACKAGES = ["mlflow", *MODEL_DISTRIBUTIONS]

LOAD = """
import importlib.util, json, sys
import mlflow.pyfunc, pandas as pd
assert importlib.util.find_spec("alignpipe") is None and importlib.util.find_spec("components") is None
assert importlib.util.find_spec("keras_hub") is None
mlflow.set_tracking_uri(sys.argv[1])
model = mlflow.pyfunc.load_model("models:/align-dual-encoder@champion")
image = open(sys.argv[2], "rb").read()
texts = json.loads(sys.argv[3])
out = {
    "image": model.predict(pd.DataFrame({"image": [image]})).tolist(),
    "text": model.predict(pd.DataFrame({"text": texts})).tolist(),
    "inputs": [c.name for c in model.metadata.get_input_schema().inputs],
}
print(json.dumps(out))
"""


def test_champion_loads_without_the_project_and_embeds_alike(pipeline_run, tmp_path):
    python = make_bare_venv(str(tmp_path / "venv"), PACKAGES)
    image_path = tmp_path / "photo.jpg"
    pixels = np.random.default_rng(0).integers(0, 255, (90, 120, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    image_path.write_bytes(buffer.getvalue())
    texts = ["a red circle at the top left", "two blue squares"]

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    proc = subprocess.run(
        [python, "-c", LOAD, pipeline_run["tracking_uri"], str(image_path), json.dumps(texts)],
        capture_output=True,
        text=True,
        cwd=tmp_path,  # not the checkout: nothing of the project is importable
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])

    encoder = AlignEncoder.load(model_dir_of(pipeline_run["work_dir"]))
    dim = encoder.model.image_encoder.embed_dim
    assert loaded["inputs"] == ["text", "image"]
    image_embedding = np.array(loaded["image"])
    text_embeddings = np.array(loaded["text"])
    assert image_embedding.shape == (1, dim) and text_embeddings.shape == (2, dim)
    np.testing.assert_allclose(image_embedding, encoder.embed_images([buffer.getvalue()]), atol=1e-5)
    np.testing.assert_allclose(text_embeddings, encoder.embed_texts(texts), atol=1e-5)
