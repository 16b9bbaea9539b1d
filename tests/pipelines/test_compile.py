"""The DAG compiles to a pipeline spec Vertex AI accepts, with the project's images."""

from __future__ import annotations

import json

import yaml

from alignpipe.config import Config, load_config
from pipelines.align_pipeline import compile_pipeline

STAGE_TASKS = {"scrape", "filter-pairs", "train", "evaluate", "register"}


def stage_tasks(spec: dict) -> dict:
    """The tasks inside the exit handler, with those of its `anything-new` condition."""
    tasks = dict(spec["components"]["comp-exit-handler-1"]["dag"]["tasks"])
    for name in [n for n in tasks if n.startswith("condition-")]:
        tasks.update(spec["components"][tasks.pop(name)["componentRef"]["name"]]["dag"]["tasks"])
    return tasks


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
    handler = spec["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    assert set(handler) == {"start-tracking", "scrape", "condition-2"}
    # the later stages run only when the scrape brought something new
    condition = handler["condition-2"]
    assert condition["taskInfo"]["name"] == "anything-new"
    assert condition["triggerPolicy"]["condition"] == (
        "inputs.parameter_values['pipelinechannel--scrape-Output'] == true"
    )
    inner = stage_tasks(spec)
    assert set(inner) == STAGE_TASKS | {"start-tracking"}
    assert inner["filter-pairs"]["inputs"]["artifacts"]["raw_pairs"] == {
        "componentInputArtifact": "pipelinechannel--scrape-pairs"  # the scrape's, into the condition
    }
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


VERTEX = [
    "runner.data_image=us-docker.pkg.dev/p/r/alignpipe-data:abc123",
    "runner.trainer_image=us-docker.pkg.dev/p/r/alignpipe-trainer:abc123",
    "runner.gcp_project=my-project",
    "runner.pipeline_root=gs://bucket/root",
    "tracking.tracking_uri=https://mlflow-abc-uc.a.run.app",
]


def test_vertex_template_sizes_every_task_and_has_no_local_store(tmp_path):
    cfg = load_config("vertex", "paper", VERTEX)
    path = compile_pipeline(cfg, str(tmp_path / "align.yaml"))
    text = open(path).read()
    spec = yaml.safe_load(text)
    assert "sqlite" not in text and "FnApiRunner" not in text
    executors = spec["deploymentSpec"]["executors"]
    launcher = executors.pop("exec-custom-training-job")["container"]  # Google's, pinned by its version
    assert launcher["image"].startswith("gcr.io/ml-pipeline/google-cloud-pipeline-components:2.22.0")
    for name, executor in executors.items():
        container = executor["container"]
        assert container["image"].endswith(":abc123"), name
        assert "pip install" not in json.dumps(container), name
        expected = (8.0, 32.0) if name == "exec-evaluate" else (4.0, 16.0)
        assert (container["resources"]["cpuLimit"], container["resources"]["memoryLimit"]) == expected, name
    tasks = stage_tasks(spec)
    ours = {name: task for name, task in tasks.items() if name != "custom-training-job"}
    assert all(task["retryPolicy"]["maxRetryCount"] == 2 for task in ours.values())
    default = Config.from_json(spec["root"]["inputDefinitions"]["parameters"]["config_json"]["defaultValue"])
    assert default.runner.beam_args[0] == "--runner=DataflowRunner" and default.train.strategy == "tpu"


def test_vertex_trains_in_a_tpu_custom_job(tmp_path):
    from components.custom_job import worker_pool_specs

    cfg = load_config(
        "vertex", "paper", VERTEX + ["runner.service_account=sa@my-project.iam.gserviceaccount.com"]
    )
    spec = yaml.safe_load(open(compile_pipeline(cfg, str(tmp_path / "align.yaml"))))
    tasks = stage_tasks(spec)
    job = tasks["custom-training-job"]
    constants = {
        k: v["runtimeValue"]["constant"]
        for k, v in job["inputs"]["parameters"].items()
        if "runtimeValue" in v
    }
    assert constants == {
        "display_name": "align-train",
        "project": "my-project",
        "location": "us-central1",
        "service_account": "sa@my-project.iam.gserviceaccount.com",
        "restart_job_on_worker_restart": True,
        "strategy": "STANDARD",
    }
    # The worker pool and an output folder of the run's own (its AIP_CHECKPOINT_DIR) come from
    # the task that specifies the job.
    for name in ("worker_pool_specs", "base_output_directory"):
        given = job["inputs"]["parameters"][name]["taskOutputParameter"]
        assert given == {"outputParameterKey": name, "producerTask": "training-job"}
    # The job fills the model artifact of the task that specified it; evaluate waits for the job.
    model = {"taskOutputArtifact": {"outputArtifactKey": "model", "producerTask": "training-job"}}
    assert (
        tasks["evaluate"]["inputs"]["artifacts"]["model"]
        == model
        == tasks["register"]["inputs"]["artifacts"]["model"]
    )
    assert "custom-training-job" in tasks["evaluate"]["dependentTasks"]
    assert worker_pool_specs(cfg, "{}", "/gcs/bucket/root/pairs", "/gcs/bucket/root/model", "align-1") == [
        {
            "machine_spec": {
                "machine_type": "cloud-tpu",
                "accelerator_type": "TPU_V3",
                "accelerator_count": 8,
            },
            "replica_count": 1,
            "container_spec": {
                "image_uri": "us-docker.pkg.dev/p/r/alignpipe-trainer:abc123",
                "command": ["python", "-m", "trainer.task"],
                "args": [
                    "--config-json",
                    "{}",
                    "--data-dir",
                    "/gcs/bucket/root/pairs",
                    "--model-dir",
                    "/gcs/bucket/root/model",
                    "--pipeline-job",
                    "align-1",
                ],
            },
        }
    ]
    v5e = cfg.replace(
        runner__train_machine_type="ct5lp-hightpu-4t",
        runner__train_accelerator_type="",
        runner__train_tpu_topology="2x2",
    )
    assert worker_pool_specs(v5e, "{}", "d", "m", "j")[0]["machine_spec"] == {
        "machine_type": "ct5lp-hightpu-4t",
        "tpu_topology": "2x2",
    }


def test_each_run_chooses_its_inputs_sets_and_preset(tmp_path):
    """The template's run parameters, and the config the first task resolves from them."""
    from components.parameters import run_config

    cfg, spec, _ = _compiled(tmp_path, ["scrape.seed_urls=https://a.example/"])
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert set(parameters) == {
        "config_json",
        "experiment",
        "source",
        "seed_urls",
        "input_paths",
        "retrieval_sets",
        "classification_sets",
        "overrides",
    }
    assert parameters["seed_urls"]["defaultValue"] == "https://a.example/"
    defaults = {name: p["defaultValue"] for name, p in parameters.items()}
    assert run_config(**defaults) == cfg  # the defaults reproduce the compiled config
    run = run_config(
        **{
            **defaults,
            "experiment": "paper",
            "source": "url_list",
            "input_paths": "gs://b/cc3m.tsv",
            "retrieval_sets": "coco=gs://b/coco/dataset_coco.json",
            "overrides": "train.steps=5\nregister.margin=0.01",
        }
    )
    assert run.experiment == "paper" and run.model.embed_dim == 640  # the paper preset
    assert run.runner.data_image == "gcr.io/p/data:1"  # what the template was compiled with
    assert run.scrape.source == "url_list" and run.scrape.input_paths == ("gs://b/cc3m.tsv",)
    assert run.eval.retrieval_sets == ("coco=gs://b/coco/dataset_coco.json",)
    assert (run.train.steps, run.register.margin) == (5, 0.01)
    inner = stage_tasks(spec)
    consumed = inner["scrape"]["inputs"]["parameters"]["config_json"]["taskOutputParameter"]
    assert consumed["producerTask"] == "start-tracking"
    # (into the condition's steps as the same channel)
    assert inner["train"]["inputs"]["parameters"]["config_json"] == {
        "componentInputParameter": "pipelinechannel--start-tracking-Output"
    }
