"""`python -m trainer.task`, the Vertex AI custom job's entry point, inside a pipeline run."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from alignpipe.config import load_config
from components import tracking
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
