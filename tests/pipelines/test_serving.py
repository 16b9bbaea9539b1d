"""`pipelines.serving`: where `alignpipe serve` listens (flags, then Vertex AI's variables) and
where its model comes from (a folder, AIP_STORAGE_URI, or MLflow's registry on a local store)."""

from __future__ import annotations

import os
import re

import mlflow
import pytest

from alignpipe.errors import InputError
from pipelines.serving import ServeTarget, find_model_folder, resolve_model, serve_target

VERTEX = {
    "AIP_HTTP_PORT": "7080",
    "AIP_HEALTH_ROUTE": "/v1/endpoints/1/deployedModels/2",
    "AIP_PREDICT_ROUTE": "/v1/endpoints/1/deployedModels/2:predict",
}


def test_without_flags_or_variables_the_server_is_local():
    assert serve_target(None, None, {}) == ServeTarget("127.0.0.1", 8080, "/health", "/predict")


def test_vertex_ai_s_variables_set_the_port_and_routes_and_every_interface_is_bound():
    assert serve_target(None, None, VERTEX) == ServeTarget(
        "0.0.0.0", 7080, VERTEX["AIP_HEALTH_ROUTE"], VERTEX["AIP_PREDICT_ROUTE"]
    )
    assert serve_target("127.0.0.1", 9000, VERTEX) == ServeTarget(
        "127.0.0.1", 9000, VERTEX["AIP_HEALTH_ROUTE"], VERTEX["AIP_PREDICT_ROUTE"]
    )


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"AIP_HTTP_PORT": "http"}, "AIP_HTTP_PORT='http' is not a TCP port (1-65535)"),
        ({"AIP_HTTP_PORT": "70000"}, "AIP_HTTP_PORT='70000' is not a TCP port"),
        ({"AIP_HTTP_PORT": "0"}, "AIP_HTTP_PORT='0' is not a TCP port"),
        ({"AIP_PREDICT_ROUTE": "predict"}, "AIP_PREDICT_ROUTE='predict' is not a path"),
    ],
)
def test_an_unusable_variable_is_one_clear_error(environ, message):
    with pytest.raises(InputError, match="^" + re.escape(message)):
        serve_target(None, None, environ)


def test_the_model_is_the_flag_or_vertex_ai_s_storage_uri(tmp_path):
    assert resolve_model("runs/model", {"AIP_STORAGE_URI": "gs://b/m"}, str(tmp_path)) == "runs/model"
    assert resolve_model(None, {"AIP_STORAGE_URI": "gs://b/m"}, str(tmp_path)) == "gs://b/m"
    with pytest.raises(
        InputError, match=r"no model: pass --model MODEL_DIR_OR_URI \(or set AIP_STORAGE_URI\)"
    ):
        resolve_model(None, {}, str(tmp_path))


def test_a_registry_uri_is_downloaded_through_mlflow(tmp_path, monkeypatch):
    model = tmp_path / "model"
    (model / "saved_model").mkdir(parents=True)
    (model / "saved_model" / "saved_model.pb").write_bytes(b"graph")
    (model / "model_config.json").write_text("{}")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    # The variable is MLflow's setting only while no earlier test in this process has called
    # mlflow.set_tracking_uri; the test's own store, whatever ran before it:
    monkeypatch.setattr(mlflow.tracking._tracking_service.utils, "_tracking_uri", None)
    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(model), "model")
    client = mlflow.MlflowClient()
    client.create_registered_model("align-dual-encoder")
    client.create_model_version("align-dual-encoder", f"{run.info.artifact_uri}/model", run.info.run_id)

    downloaded = resolve_model("models:/align-dual-encoder/1", os.environ, str(tmp_path / "download"))
    folder = find_model_folder(downloaded)
    assert folder.startswith(str(tmp_path / "download"))
    with open(os.path.join(folder, "saved_model", "saved_model.pb"), "rb") as f:
        assert f.read() == b"graph"
    with pytest.raises(InputError, match="cannot download models:/align-dual-encoder/7 from MLflow: "):
        resolve_model("models:/align-dual-encoder/7", os.environ, str(tmp_path / "download"))
