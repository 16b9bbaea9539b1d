"""`components.vertex_registry`: the exact Model Registry requests, and how aliases move.

The real aiplatform client talks to `tests.google_fakes` on 127.0.0.1, which keeps the
registry's versions and moves an alias as Vertex AI documents it: an alias given to a new
version leaves the version that held it. `register_model` runs on a real local MLflow store.
"""

from __future__ import annotations

import re

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from alignpipe.config import load_config
from alignpipe.errors import ConfigError, InputError
from alignpipe.model.encoder import CONFIG_FILE
from components import stages, vertex_registry
from components.vertex_registry import gcs_uri, upload_model_version, vertex_alias
from tests.google_fakes import BUCKET, CREATED, LOCATION, PROJECT, REGION, fake_google_cloud

MODEL_ID = "1001"  # the id the fake gives the first model it creates
MODEL = f"{CREATED}/models/{MODEL_ID}"
CHAMPION = ["champion", "default"]  # the aliases a promoted version gets, beside mlflow-v<N>
SERVING_IMAGE = f"{REGION}-docker.pkg.dev/{PROJECT}/alignpipe/alignpipe-serving:abc1234"


@pytest.fixture
def fake(monkeypatch):
    """The fake APIs (`tests.google_fakes`), the client libraries pointed at them."""
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")  # MLflow's usage reports leave 127.0.0.1
    yield from fake_google_cloud(monkeypatch)


@pytest.fixture
def cfg(tmp_path):
    overrides = [f"runner.gcp_project={PROJECT}", f"runner.gcp_region={REGION}"]
    overrides += [f"runner.work_dir={tmp_path / 'work'}", "register.vertex_model_registry=true"]
    overrides += [f"register.serving_image={SERVING_IMAGE}"]  # what cloudbuild.yaml's compile sets
    return load_config("local", "tiny", overrides)


def upload_body(cfg, run: int, aliases: list[str], decision: str) -> dict:
    """The `models:upload` request's model of MLflow version `run`, from `runs/<run>/model`."""
    return {
        "displayName": "align-dual-encoder",
        "artifactUri": f"gs://{BUCKET}/runs/{run}/model/saved_model",
        # The project's serving image (`alignpipe serve`), on the port and routes it answers.
        "containerSpec": {
            "imageUri": SERVING_IMAGE,
            "predictRoute": "/predict",
            "healthRoute": "/health",
            "ports": [{"containerPort": 8080}],
        },
        "labels": {"mlflow_version": str(run)},
        "versionAliases": aliases,
        "versionDescription": f"MLflow version {run}; {decision}",
    }


def test_each_upload_is_a_version_of_one_model_and_the_champion_alias_follows_promotion(fake, cfg):
    first = upload_model_version(cfg, f"/gcs/{BUCKET}/runs/1/model", "1", True, "first model")
    kept = upload_model_version(cfg, f"gs://{BUCKET}/runs/2/model/", "2", False, "0.4000 vs 0.5000")
    won = upload_model_version(cfg, f"/gcs/{BUCKET}/runs/3/model", "3", True, "0.7000 vs 0.5000")

    assert fake.calls() == [
        call
        for version in ("1", "2", "3")
        for call in [
            ("GET", f"/v1/{LOCATION}/models"),  # is there a model of that name?
            ("POST", f"/v1/{LOCATION}/models:upload"),  # done at once here: no operation polling
            ("GET", f"/v1/{MODEL}@{version}"),  # the SDK reads the new version back
        ]
    ]
    for listing in fake.requests[::3]:
        assert listing.query["filter"] == ['display_name="align-dual-encoder"']
        assert listing.query["orderBy"] == ["create_time"]
    bodies = [r.body for r in fake.requests[1::3]]
    new, stays = "the new champion", "the champion stays"
    assert bodies == [
        # No parent: the first upload creates the model.
        {"model": upload_body(cfg, 1, ["mlflow-v1", *CHAMPION], f"{new}: first model")},
        # A kept champion: neither the champion alias nor the default one.
        {"model": upload_body(cfg, 2, ["mlflow-v2"], f"{stays}: 0.4000 vs 0.5000"), "parentModel": MODEL},
        {
            "model": upload_body(cfg, 3, ["mlflow-v3", *CHAMPION], f"{new}: 0.7000 vs 0.5000"),
            "parentModel": MODEL,
        },
    ]
    # The registry as Vertex AI documents it: champion and default left version 1 for version 3.
    assert [v["versionAliases"] for v in fake.models[MODEL_ID]] == [
        ["mlflow-v1"],
        ["mlflow-v2"],
        ["mlflow-v3", "champion", "default"],
    ]
    assert first == {
        "resource_name": MODEL,
        "version_id": "1",
        "version_name": f"{MODEL}@1",
        "aliases": ["mlflow-v1", *CHAMPION],
        "artifact_uri": f"gs://{BUCKET}/runs/1/model/saved_model",
        "parent_model": None,
    }
    assert (kept["version_name"], kept["aliases"], kept["parent_model"]) == (
        f"{MODEL}@2",
        ["mlflow-v2"],
        MODEL,
    )
    assert (won["version_name"], won["aliases"]) == (f"{MODEL}@3", ["mlflow-v3", *CHAMPION])


def test_the_champion_alias_is_sent_in_vertex_form(fake, cfg):
    upload_model_version(cfg.replace(register__champion_alias="Prod_Champion"), f"gs://{BUCKET}/m", "7", True)
    body = fake.only("POST", "/models:upload").body
    assert body["model"]["versionAliases"] == ["mlflow-v7", "prod-champion", "default"]
    assert body["model"]["versionDescription"] == "MLflow version 7; the new champion"


def test_register_model_uploads_after_mlflow_and_logs_the_vertex_version(fake, cfg, tmp_path, monkeypatch):
    # The FUSE mount, here a local folder, so that MLflow logs the same model Vertex AI gets.
    monkeypatch.setattr(vertex_registry, "FUSE_PREFIX", f"{tmp_path}/gcs/")
    model_dir = tmp_path / "gcs" / BUCKET / "runs" / "1" / "model"
    (model_dir / "saved_model").mkdir(parents=True)
    (model_dir / "saved_model" / "saved_model.pb").write_bytes(b"")
    (model_dir / CONFIG_FILE).write_text(cfg.to_json())

    first = stages.register_stage(cfg.to_json(), "", str(model_dir), {"set/image_to_text_r1": 0.5})
    tags = MlflowClient(mlflow.get_tracking_uri()).get_run(mlflow.last_active_run().info.run_id).data.tags
    champion = {"version": "1", "metrics": {"set/image_to_text_r1": 0.9}}
    second = stages.register_stage(cfg.to_json(), "", str(model_dir), {"set/image_to_text_r1": 0.5}, champion)

    assert first["promoted"] and first["vertex_model"] == {
        "resource_name": MODEL,
        "version_id": "1",
        "version_name": f"{MODEL}@1",
        "aliases": ["mlflow-v1", *CHAMPION],
        "artifact_uri": f"gs://{BUCKET}/runs/1/model/saved_model",
        "parent_model": None,
    }
    assert {k: v for k, v in tags.items() if k.startswith("vertex")} == {
        "vertex_model": MODEL,
        "vertex_model_version": "1",
        "vertex_model_aliases": "mlflow-v1,champion,default",
    }
    assert not second["promoted"] and second["version"] == "2"
    assert second["vertex_model"]["aliases"] == ["mlflow-v2"]
    assert [r.body["model"]["labels"] for r in fake.requests if r.path.endswith(":upload")] == [
        {"mlflow_version": "1"},
        {"mlflow_version": "2"},
    ]


@pytest.mark.parametrize(
    ("path", "uri"),
    [
        (f"/gcs/{BUCKET}/root/align-1/train/model", f"gs://{BUCKET}/root/align-1/train/model"),
        (f"/gcs/{BUCKET}/model/", f"gs://{BUCKET}/model"),
        (f"/gcs/{BUCKET}", f"gs://{BUCKET}"),
        (f"gs://{BUCKET}/root/model", f"gs://{BUCKET}/root/model"),
    ],
)
def test_gcs_uri_of_a_fuse_path_or_a_uri(path, uri):
    assert gcs_uri(path) == uri


@pytest.mark.parametrize(
    "path", ["/tmp/work/model", "work/model", "/gcs/", "/gcsfuse/b/m", "gs://", "s3://b/m"]
)
def test_a_model_outside_cloud_storage_is_one_clear_error(fake, cfg, path):
    with pytest.raises(InputError, match=f"needs the model in Cloud Storage .*{re.escape(repr(path))}"):
        upload_model_version(cfg, path, "1", True)
    assert fake.calls() == []


def test_no_project_is_one_clear_error(fake, cfg):
    with pytest.raises(ConfigError, match="runner.gcp_project='' is not allowed"):
        upload_model_version(cfg.replace(runner__gcp_project=""), f"gs://{BUCKET}/m", "1", True)
    assert fake.calls() == []


@pytest.mark.parametrize(
    "image", ["alignpipe-serving:latest", "docker.io/library/alignpipe-serving:1", "localhost:5000/serving"]
)
def test_a_serving_image_vertex_ai_cannot_pull_is_one_clear_error(fake, cfg, image):
    with pytest.raises(ConfigError, match=re.escape(f"register.serving_image={image!r} is not allowed")):
        upload_model_version(cfg.replace(register__serving_image=image), f"gs://{BUCKET}/m", "1", True)
    assert fake.calls() == []


def test_no_credentials_is_one_clear_error(fake, cfg, monkeypatch, tmp_path):
    from google.auth.compute_engine import _metadata
    from google.cloud.aiplatform import initializer

    monkeypatch.setattr(initializer, "global_config", initializer._Config())  # no credentials
    monkeypatch.setattr(_metadata, "_NO_GCE_CHECK", True)  # not on Compute Engine: no metadata server
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))  # no gcloud login
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    with pytest.raises(InputError, match="no Google Cloud credentials .*gcloud auth application-default"):
        upload_model_version(cfg, f"gs://{BUCKET}/m", "1", True)
    assert fake.calls() == []


@pytest.mark.parametrize(
    ("name", "alias"),
    [("champion", "champion"), ("Prod_Champion", "prod-champion"), ("2nd best!", "nd-best"), ("a.b", "a-b")],
)
def test_vertex_alias(name, alias):
    assert vertex_alias(name) == alias


@pytest.mark.parametrize("name", ["", "7", "a", "--", "été"])
def test_a_name_without_a_vertex_alias_is_refused(name):
    with pytest.raises(ConfigError, match=re.escape(f"register.champion_alias={name!r} is not allowed")):
        vertex_alias(name)
