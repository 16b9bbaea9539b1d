"""MLflow parent/stage runs across processes, on a real local SQLite store."""

from __future__ import annotations

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from alignpipe.config import load_config
from alignpipe.errors import AlignPipeError
from components import mlflow_store, tracking


@pytest.fixture
def cfg(tmp_path):
    return load_config("local", "tiny", [f"runner.work_dir={tmp_path}"])


def test_default_store_is_sqlite_in_the_work_dir(cfg, tmp_path):
    assert tracking.tracking_uri(cfg) == f"sqlite:///{tmp_path}/mlflow.db"


def test_stages_nest_under_one_parent_which_the_exit_task_ends(cfg):
    parent = tracking.start_pipeline_run(cfg, "align-123")
    assert tracking.start_pipeline_run(cfg, "align-123") == parent  # a retried first task
    for stage in ("scrape", "filter"):
        with tracking.stage_run(cfg, "align-123", stage):
            mlflow.log_metric("pairs", 3)
    assert tracking.finish_pipeline_run(cfg, "align-123", succeeded=False) == parent
    client = MlflowClient(tracking.tracking_uri(cfg))
    assert client.get_run(parent).info.status == "FAILED"
    assert client.get_run(parent).data.params["train.steps"] == str(cfg.train.steps)
    children = client.search_runs(
        [client.get_run(parent).info.experiment_id], f"tags.mlflow.parentRunId = '{parent}'"
    )
    assert sorted(c.data.tags[tracking.STAGE_TAG] for c in children) == ["filter", "scrape"]
    assert all(c.data.metrics["pairs"] == 3 for c in children)
    assert client.get_run(parent).data.metrics == {"scrape.pairs": 3, "filter.pairs": 3}


def test_standalone_stage_is_a_top_level_run_with_the_config(cfg):
    with tracking.stage_run(cfg, "", "train") as run:
        run_id = run.info.run_id
    data = MlflowClient(tracking.tracking_uri(cfg)).get_run(run_id).data
    assert "mlflow.parentRunId" not in data.tags
    assert data.params["experiment"] == "tiny"


def test_a_new_store_is_set_up_ahead_and_a_late_run_keeps_its_start(cfg):
    started = tracking.now_ms() - 60_000
    mlflow_store.prepare(cfg)
    assert tracking.tracking_uri(cfg) in mlflow_store._SETUP  # a child is creating it
    tracking.start_pipeline_run(cfg, "align-7")
    with tracking.stage_run(cfg, "align-7", "scrape", started_ms=started) as run:
        mlflow.log_metric("pairs", 5)
    assert not mlflow_store._SETUP
    done = MlflowClient(tracking.tracking_uri(cfg)).get_run(run.info.run_id)
    assert done.info.start_time == started and done.info.status == "FINISHED"
    assert done.info.run_name == "scrape" and done.data.metrics == {"pairs": 5}
    assert done.data.tags["mlflow.parentRunId"] == tracking.find_pipeline_run(cfg, "align-7")
    assert done.data.tags[tracking.STAGE_TAG] == "scrape" and "mlflow.user" in done.data.tags


def test_a_late_run_records_the_failure_of_the_work_before_it(cfg):
    with pytest.raises(ValueError, match="no seeds"):
        with tracking.stage_run(cfg, "", "scrape", started_ms=tracking.now_ms()) as run:
            raise ValueError("no seeds")
    assert MlflowClient(tracking.tracking_uri(cfg)).get_run(run.info.run_id).info.status == "FAILED"


def test_no_child_for_a_tracking_server_or_an_existing_store(cfg):
    mlflow_store.prepare(cfg.replace(tracking__tracking_uri="http://127.0.0.1:5999"))
    assert not mlflow_store._SETUP
    tracking.connect(cfg)
    mlflow_store.prepare(cfg)
    assert not mlflow_store._SETUP


def test_the_last_finished_stage_runs_artifact_is_the_baseline(cfg):
    assert tracking.last_stage_artifact(cfg, "filter", "corpus_stats.json") is None
    for pairs in (10, 12):
        with tracking.stage_run(cfg, "", "filter"):
            mlflow.log_dict({"pairs": pairs}, "corpus_stats.json")
    with pytest.raises(RuntimeError):
        with tracking.stage_run(cfg, "", "filter"):  # a failed run is no baseline
            mlflow.log_dict({"pairs": 99}, "corpus_stats.json")
            raise RuntimeError("the filter failed")
    with tracking.stage_run(cfg, "", "filter"):  # nor is a finished run without the artifact
        pass
    assert tracking.last_stage_artifact(cfg, "filter", "corpus_stats.json") == {"pairs": 12}


def test_a_stage_without_its_parent_run_fails_loudly(cfg):
    """A task that cannot see the pipeline's parent run has another store: never a new parent."""
    with pytest.raises(AlignPipeError, match="no MLflow parent run for pipeline job 'align-9'"):
        with tracking.stage_run(cfg, "align-9", "scrape"):
            pass


def test_a_tracking_server_that_does_not_answer_fails_loudly(cfg):
    from tests.pipelines.conftest import free_port

    uri = f"http://127.0.0.1:{free_port()}"
    down = cfg.replace(tracking__tracking_uri=uri, tracking__server_wait_s=0.5)
    with pytest.raises(AlignPipeError, match=f"the MLflow tracking server {uri} does not answer"):
        tracking.connect(down)


def test_a_cloud_run_server_that_would_carry_the_artifacts_is_refused():
    """Its artifact proxy takes each file in one request, and Cloud Run refuses bodies over 32 MiB."""
    from mlflow.entities import Experiment

    run_app = "https://alignpipe-mlflow-abc123-uc.a.run.app"
    proxied = Experiment("1", "align", "mlflow-artifacts:/1", "active")
    with pytest.raises(AlignPipeError) as refused:
        tracking.check_artifact_location(run_app, proxied)
    message = str(refused.value)
    assert "\n" not in message and message.startswith(f"MLflow experiment 'align' at {run_app} keeps")
    assert "--no-serve-artifacts" in message and "tracking.experiment" in message
    # In the bucket: clients write it themselves. On another server the proxy may be fine.
    tracking.check_artifact_location(run_app, Experiment("2", "align", "gs://b/mlflow/2", "active"))
    tracking.check_artifact_location("http://127.0.0.1:5000", proxied)
