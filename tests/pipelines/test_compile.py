"""The DAG compiles to a pipeline spec Vertex AI accepts, with the project's images."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from alignpipe.config import Config, load_config
from pipelines import cli
from pipelines.align_pipeline import compile_pipeline

STAGE_TASKS = {"scrape", "filter-pairs", "train", "evaluate", "register", "index-corpus"}


def stage_tasks(spec: dict) -> dict:
    """The tasks inside the exit handler, with those of its `anything-new` condition."""
    tasks = dict(spec["components"]["comp-exit-handler-1"]["dag"]["tasks"])
    for name in [n for n in tasks if n.startswith("condition-")]:
        tasks.update(spec["components"][tasks.pop(name)["componentRef"]["name"]]["dag"]["tasks"])
    return tasks


INPUT_PLACEHOLDER = re.compile(r"\{\{\$\.inputs\.parameters\['(\w+)'\]\}\}")


def custom_job_request(spec: dict, training_job_outputs: dict) -> dict:
    """The CustomJob that the template's `custom-training-job` task asks Vertex AI for: the
    launcher's `--payload` with each input placeholder filled as the pipeline fills it (task
    constants, the `training-job` task's outputs, the component's defaults)."""
    task = stage_tasks(spec)["custom-training-job"]
    component = spec["components"][task["componentRef"]["name"]]
    values = {name: p.get("defaultValue") for name, p in component["inputDefinitions"]["parameters"].items()}
    for name, given in task["inputs"]["parameters"].items():
        if "runtimeValue" in given:
            values[name] = given["runtimeValue"]["constant"]
        else:
            assert given["taskOutputParameter"]["producerTask"] == "training-job", name
            values[name] = training_job_outputs[given["taskOutputParameter"]["outputParameterKey"]]
    args = spec["deploymentSpec"]["executors"][component["executorLabel"]]["container"]["args"]
    payload = args[args.index("--payload") + 1]
    return json.loads(
        INPUT_PLACEHOLDER.sub(
            lambda m: values[m[1]] if isinstance(values[m[1]], str) else json.dumps(values[m[1]]), payload
        )
    )


def specify_custom_job(spec: dict, pairs: str, model_uri: str, job: str = "align-1") -> dict:
    """Runs the template's `training-job` task (its function, on the template's default run
    parameters) and returns the CustomJob request it makes of Vertex AI."""
    from kfp import dsl

    from components.ops import training_job
    from components.parameters import run_config

    parameters = spec["root"]["inputDefinitions"]["parameters"]
    config_json = run_config(**{name: p["defaultValue"] for name, p in parameters.items()}).to_json()
    outputs = training_job(
        config_json=config_json,
        pipeline_job=job,
        pairs=dsl.Dataset(uri=pairs),
        model=dsl.Model(uri=model_uri),
    )
    names = training_job.__annotations__["return"]._fields  # the task's outputs, in order
    return custom_job_request(spec, dict(zip(names, outputs, strict=True)))


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
    assert (
        images["exec-scrape"]
        == images["exec-filter-pairs"]
        == images["exec-index-corpus"]
        == "gcr.io/p/data:1"
    )
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
    "runner.trainer_tpu_image=us-docker.pkg.dev/p/r/alignpipe-trainer-tpu:abc123",
    "register.serving_image=us-docker.pkg.dev/p/r/alignpipe-serving:abc123",
    "runner.gcp_project=my-project",
    "runner.pipeline_root=gs://bucket/root",
    "tracking.tracking_uri=https://mlflow-abc-uc.a.run.app",
]


@pytest.mark.parametrize(
    ("changed", "fragments"),
    [
        ("runner.gcp_project=", ("runner.gcp_project=''", "Google Cloud project")),
        ("runner.pipeline_root=/data/root", ("runner.pipeline_root='/data/root'", "gs://BUCKET/PATH")),
        (
            "runner.data_image=alignpipe-data:latest",
            ("runner.data_image='alignpipe-data:latest'", "registry"),
        ),
        ("runner.trainer_tpu_image=trainer:1", ("runner.trainer_tpu_image='trainer:1'", "docker.pkg.dev")),
        ("register.serving_image=serving:1", ("register.serving_image='serving:1'", "docker.pkg.dev")),
        ("tracking.tracking_uri=http://mlflow.internal", ("tracking.tracking_uri='http://", "https URI")),
    ],
)
def test_vertex_compile_refuses_what_cannot_run(tmp_path, changed, fragments):
    from tests.pipelines.conftest import run_cli
    from tests.pipelines.test_cli_errors import _one_clear_error

    out = tmp_path / "align.yaml"
    sets = [f"--set={s}" for s in VERTEX + [changed]]
    _one_clear_error(
        run_cli("compile", "--env=vertex", "--experiment=paper", *sets, f"--out={out}"), *fragments
    )
    assert not out.exists()


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


def test_vertex_trains_in_a_custom_job(tmp_path):
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
    }
    # The worker pool, an output folder of the run's own (its AIP_CHECKPOINT_DIR), the timeout and
    # the scheduling strategy come from the task that specifies the job, from the run's config.
    for name in ("worker_pool_specs", "base_output_directory", "timeout", "strategy"):
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
    request = specify_custom_job(
        spec, "/gcs/bucket/root/pairs", "gs://bucket/root/1/align-1/training-job_2/model"
    )
    assert request["job_spec"]["base_output_directory"] == {
        "output_uri_prefix": "gs://bucket/root/1/align-1/training-job_2/custom-job"
    }
    [pool] = request["job_spec"]["worker_pool_specs"]
    assert pool["container_spec"]["command"] == ["python", "-m", "trainer.task"]
    assert pool["container_spec"]["args"] == [
        "--config-json",
        cfg.to_json(),
        "--data-dir",
        "/gcs/bucket/root/pairs",
        "--model-dir",
        "/gcs/bucket/root/1/align-1/training-job_2/model",
        "--pipeline-job",
        "align-1",
    ]


IMAGES = {
    "runner.trainer_image": "us-docker.pkg.dev/p/r/alignpipe-trainer:abc123",
    "runner.trainer_tpu_image": "us-docker.pkg.dev/p/r/alignpipe-trainer-tpu:abc123",
    "runner.trainer_gpu_image": "us-docker.pkg.dev/p/r/alignpipe-trainer-gpu:abc123",
}


@pytest.mark.parametrize(
    ("accelerator", "chips", "machine", "replicas", "image"),
    [
        ("cpu", 1, {"machine_type": "n2-standard-32"}, 1, "runner.trainer_image"),
        (
            "tpu-v5e",
            1,
            {"machine_type": "ct5lp-hightpu-1t", "tpu_topology": "1x1"},
            1,
            "runner.trainer_tpu_image",
        ),
        (
            "tpu-v5e",
            8,
            {"machine_type": "ct5lp-hightpu-8t", "tpu_topology": "2x4"},
            1,
            "runner.trainer_tpu_image",
        ),
        (
            "tpu-v5e",
            64,
            {"machine_type": "ct5lp-hightpu-4t", "tpu_topology": "8x8"},
            16,
            "runner.trainer_tpu_image",
        ),
        (
            "tpu-v6e",
            4,
            {"machine_type": "ct6e-standard-4t", "tpu_topology": "2x2"},
            1,
            "runner.trainer_tpu_image",
        ),
        (
            "tpu-v6e",
            16,
            {"machine_type": "ct6e-standard-4t", "tpu_topology": "4x4"},
            4,
            "runner.trainer_tpu_image",
        ),
        (
            "tpu-v5p",
            8,
            {"machine_type": "ct5p-hightpu-4t", "tpu_topology": "2x2x2"},
            2,
            "runner.trainer_tpu_image",
        ),
        (
            "gpu-a100",
            8,
            {
                "machine_type": "a2-highgpu-8g",
                "accelerator_type": "NVIDIA_TESLA_A100",
                "accelerator_count": 8,
            },
            1,
            "runner.trainer_gpu_image",
        ),
        (
            "gpu-h100",
            8,
            {"machine_type": "a3-highgpu-8g", "accelerator_type": "NVIDIA_H100_80GB", "accelerator_count": 8},
            1,
            "runner.trainer_gpu_image",
        ),
        (
            "gpu-l4",
            1,
            {"machine_type": "g2-standard-8", "accelerator_type": "NVIDIA_L4", "accelerator_count": 1},
            1,
            "runner.trainer_gpu_image",
        ),
    ],
)
def test_each_accelerator_compiles_to_its_custom_job(tmp_path, accelerator, chips, machine, replicas, image):
    """`alignpipe compile --env vertex --set runner.accelerator=X`: the custom job that a run of the
    template asks for has the slice's machine, topology, VMs, image, timeout and scheduling."""
    out = tmp_path / "align.yaml"
    sets = [f"{k}={v}" for k, v in IMAGES.items()] + [
        "runner.data_image=us-docker.pkg.dev/p/r/alignpipe-data:abc123",
        "register.serving_image=us-docker.pkg.dev/p/r/alignpipe-serving:abc123",
        f"runner.accelerator={accelerator}",
        f"runner.accelerator_chips={chips}",
        "runner.train_step_seconds=0.5",
        "runner.train_scheduling=SPOT",
        "runner.gcp_project=my-project",
        "runner.pipeline_root=gs://bucket/root",
    ]
    argv = ["compile", "--env=vertex", "--experiment=tiny", "--tracking-uri=https://mlflow.example.org"]
    assert cli.main(argv + [f"--set={s}" for s in sets] + [f"--out={out}"]) == 0
    request = specify_custom_job(yaml.safe_load(out.read_text()), "/gcs/b/pairs", "gs://b/r/1/a/t_1/model")
    [pool] = request["job_spec"]["worker_pool_specs"]
    assert pool["machine_spec"] == machine
    assert pool["replica_count"] == replicas
    assert pool["container_spec"]["image_uri"] == IMAGES[image]
    # 700 steps (the tiny preset) x 0.5 s x 1.5, plus an hour to start
    assert request["job_spec"]["scheduling"]["timeout"] == f"{700 * 0.5 * 1.5 + 3600:.0f}s"
    assert request["job_spec"]["scheduling"]["strategy"] == "SPOT"
    run = Config.from_json(pool["container_spec"]["args"][1])
    assert run.train.strategy == {"cpu": "default", "tpu": "tpu", "gpu": "mirrored"}[accelerator[:3]]


def test_a_slice_whose_chips_cannot_hold_their_share_of_the_batch_fails_to_compile(tmp_path):
    from tests.pipelines.conftest import run_cli
    from tests.pipelines.test_cli_errors import _one_clear_error

    # The paper's 16,384 examples over 256 TPU v5e chips: 64 per 16 GB chip.
    proc = run_cli(
        "compile",
        "--env=vertex",
        "--experiment=paper",
        "--tracking-uri=https://mlflow.example.org",
        "--set=runner.accelerator=tpu-v5e",
        "--set=runner.accelerator_chips=256",
        f"--out={tmp_path / 'align.yaml'}",
    )
    _one_clear_error(
        proc, "runner.accelerator_chips=256", "64 examples per chip", "14.4 GB usable", "tpu-v5e"
    )
    assert not (tmp_path / "align.yaml").exists()


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
