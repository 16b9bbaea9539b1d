"""`python -m trainer.task`, the Vertex AI custom job's entry point, inside a pipeline run."""

from __future__ import annotations

import os

import numpy as np
import pytest
import yaml
from kfp import dsl
from mlflow.tracking import MlflowClient

from alignpipe.config import load_config
from alignpipe.model.encoder import AlignEncoder
from components import tracking
from components.ops import build_components
from pipelines import cli
from tests.pipelines.test_compile import custom_job_request
from tests.training.conftest import SMALL_RUN, write_shards
from tests.training.test_trainer import SMALL
from trainer.task import main

pytestmark = pytest.mark.large


def test_a_custom_job_logs_its_training_as_the_pipelines_train_stage(shards_dir, tmp_path):
    cfg = load_config("local", "tiny", SMALL + ["train.steps=4", f"runner.work_dir={tmp_path / 'work'}"])
    parent = tracking.start_pipeline_run(cfg, "align-42")
    model_dir = str(tmp_path / "model")
    code = main(
        [
            "--config-json",
            cfg.to_json(),
            "--data-dir",
            shards_dir,
            "--model-dir",
            model_dir,
            "--pipeline-job",
            "align-42",
        ]
    )
    assert code == 0
    client = MlflowClient(tracking.tracking_uri(cfg))
    runs = client.search_runs(
        [client.get_run(parent).info.experiment_id], f"tags.mlflow.parentRunId = '{parent}'"
    )
    assert [run.data.tags[tracking.STAGE_TAG] for run in runs] == ["train"]
    assert runs[0].data.metrics["train_steps"] == 4 and runs[0].info.status == "FINISHED"
    assert (tmp_path / "model" / "model_config.json").exists()


def train_stages(cfg, pipeline_job: str) -> list:
    """The MLflow train-stage runs of `pipeline_job`, oldest first."""
    client = MlflowClient(tracking.tracking_uri(cfg))
    parent = client.get_run(tracking.find_pipeline_run(cfg, pipeline_job))
    runs = client.search_runs(
        [parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    return sorted(runs, key=lambda run: run.info.start_time)


def test_two_pipeline_runs_on_vertex_ai_train_twice_and_a_restarted_worker_resumes(tmp_path, monkeypatch):
    """Two runs of the compiled template in a row (scheduled retraining: new pairs, same config),
    each custom job given AIP_CHECKPOINT_DIR and AIP_MODEL_DIR as Vertex AI derives them from its
    `base_output_directory`: the second run trains from step 0 rather than restoring the first's
    final checkpoint, and a restarted worker of the second job resumes from its own."""
    template = tmp_path / "align.yaml"
    compiled = cli.main(
        [
            "compile",
            "--env=vertex",
            "--experiment=tiny",
            "--tracking-uri=https://mlflow.example.org",
            "--set=runner.gcp_project=my-project",
            "--set=runner.pipeline_root=gs://bucket/root",
            "--set=runner.data_image=us-docker.pkg.dev/my-project/r/alignpipe-data:abc1234",
            "--set=runner.trainer_image=us-docker.pkg.dev/my-project/r/alignpipe-trainer:abc1234",
            "--set=register.serving_image=us-docker.pkg.dev/my-project/r/alignpipe-serving:abc1234",
            f"--out={template}",
        ]
    )
    assert compiled == 0
    spec = yaml.safe_load(template.read_text())
    # The run's config; its MLflow store is a local one here.
    cfg = load_config("local", "tiny", SMALL_RUN + [f"runner.work_dir={tmp_path / 'work'}"])
    training_job = build_components(cfg).training_job.python_func
    root = tmp_path / "root" / "123456"  # <pipeline_root>/<project number>, where artifacts go
    runs = {}
    for job, seed in (("align-20300106030000", 0), ("align-20300113030000", 1)):
        pairs = str(root / job / "filter-pairs_3" / "pairs")
        write_shards(pairs, num_pairs=24, seed=seed)
        model = dsl.Model(uri=str(root / job / "training-job_5" / "model"))
        outputs = training_job(
            config_json=cfg.to_json(), pipeline_job=job, pairs=dsl.Dataset(uri=pairs), model=model
        )
        names = training_job.__annotations__["return"]._fields  # the task's outputs, in order
        request = custom_job_request(spec, dict(zip(names, outputs, strict=True)))
        base = request["job_spec"]["base_output_directory"]["output_uri_prefix"]
        monkeypatch.setenv("AIP_CHECKPOINT_DIR", f"{base}/checkpoints/")
        monkeypatch.setenv("AIP_MODEL_DIR", f"{base}/model/")
        tracking.start_pipeline_run(cfg, job)
        worker = request["job_spec"]["worker_pool_specs"][0]["container_spec"]
        assert worker["command"] == ["python", "-m", "trainer.task"]
        assert main(worker["args"]) == 0
        runs[job] = {"base": base, "model": model.path, "args": worker["args"]}

    for job, run in runs.items():
        [stage] = train_stages(cfg, job)
        assert stage.data.metrics["resumed_from_step"] == 0
        steps = MlflowClient(tracking.tracking_uri(cfg)).get_metric_history(stage.info.run_id, "loss")
        assert [m.step for m in steps] == [1, 2]  # both steps ran in this run
        assert "ckpt-2.index" in os.listdir(os.path.join(run["base"], "checkpoints"))
    weights = [AlignEncoder.load(run["model"]).model.get_weights() for run in runs.values()]
    assert not all(np.array_equal(a, b) for a, b in zip(*weights, strict=True))
    first, second = runs.values()
    assert first["base"] != second["base"]

    # A restarted worker of the second job (same job, same environment) resumes from its checkpoint.
    assert main(second["args"]) == 0
    assert train_stages(cfg, "align-20300113030000")[-1].data.metrics["resumed_from_step"] == 2
