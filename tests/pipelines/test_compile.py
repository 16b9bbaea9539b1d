"""The DAG compiles to a pipeline spec Vertex AI accepts, with the project's images."""

from __future__ import annotations

import json

import yaml

from alignpipe.config import Config, load_config
from pipelines.align_pipeline import compile_pipeline

STAGE_TASKS = {"scrape", "filter-pairs", "train", "evaluate", "register"}


def _compiled(tmp_path, overrides=()):
    cfg = load_config(
        "local",
        "tiny",
        ["runner.data_image=gcr.io/p/data:1", "runner.trainer_image=gcr.io/p/trainer:1", *overrides],
    )
    path = compile_pipeline(cfg, str(tmp_path / "align.yaml"))
    return cfg, yaml.safe_load(open(path)), path


def test_five_stages_inside_an_exit_handler(tmp_path):
    _, spec, _ = _compiled(tmp_path)
    root = spec["root"]["dag"]["tasks"]
    assert set(root) == {"exit-handler-1", "finish-tracking"}
    assert root["finish-tracking"]["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    inner = spec["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    assert set(inner) == STAGE_TASKS | {"start-tracking"}
    assert (
        inner["filter-pairs"]["inputs"]["artifacts"]["raw_pairs"]["taskOutputArtifact"]["producerTask"]
        == "scrape"
    )
    assert (
        inner["register"]["inputs"]["artifacts"]["eval_metrics"]["taskOutputArtifact"]["producerTask"]
        == "evaluate"
    )


def test_components_use_the_project_images_and_install_nothing(tmp_path):
    _, spec, _ = _compiled(tmp_path)
    executors = spec["deploymentSpec"]["executors"]
    images = {name: e["container"]["image"] for name, e in executors.items()}
    assert images["exec-train"] == images["exec-evaluate"] == "gcr.io/p/trainer:1"
    assert images["exec-scrape"] == images["exec-filter-pairs"] == "gcr.io/p/data:1"
    assert not any("pip install" in json.dumps(e) for e in executors.values())


def test_config_travels_as_the_default_parameter(tmp_path):
    cfg, spec, _ = _compiled(tmp_path, ["train.steps=33"])
    default = spec["root"]["inputDefinitions"]["parameters"]["config_json"]["defaultValue"]
    assert Config.from_json(default) == cfg


def test_vertex_ai_accepts_the_template(tmp_path):
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import aiplatform

    cfg, _, path = _compiled(tmp_path)
    job = aiplatform.PipelineJob(
        display_name="align-test",
        template_path=path,
        pipeline_root="gs://bucket/root",
        parameter_values={"config_json": cfg.to_json()},
        enable_caching=False,
        project="my-project",
        location="us-central1",
        credentials=AnonymousCredentials(),
    )
    body = job._gca_resource  # the request body `submit()` sends
    assert body.pipeline_spec["pipelineInfo"]["name"] == "align"
    assert body.runtime_config.gcs_output_directory == "gs://bucket/root"
    assert Config.from_json(body.runtime_config.parameter_values["config_json"]) == cfg
