"""MLflow bookkeeping: one parent run per pipeline run, one nested run per stage.

kfp tasks are separate processes (separate pods on Vertex AI), so they cannot
share an active MLflow run object. The parent run is created by the first task,
left RUNNING, and tagged with the kfp pipeline-job name; every stage finds it by
that tag and nests its own run under it; the exit-handler task ends it with the
pipeline's final state. A stage run outside a pipeline (the CLI's stage
commands) is a top-level run of its own.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

import mlflow
from mlflow.tracking import MlflowClient
from mlflow.tracking.context.registry import resolve_tags
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from alignpipe import fs
from alignpipe.config import Config
from alignpipe.config.validation import is_cloud_run_url
from alignpipe.errors import AlignPipeError
from components import mlflow_auth, mlflow_store
from components.mlflow_store import tracking_uri

PIPELINE_JOB_TAG = "alignpipe.pipeline_job"
ROLE_TAG = "alignpipe.role"
STAGE_TAG = "alignpipe.stage"


def connect(cfg: Config) -> str:
    """Points MLflow at the configured store and experiment; returns the experiment id.

    A new experiment on a local store keeps its artifacts in `<work_dir>/mlartifacts`
    (MLflow would otherwise use the current folder, which differs per kfp task).
    """
    uri = tracking_uri(cfg)
    mlflow_store.wait(uri)
    mlflow_auth.authenticate(cfg, uri)
    mlflow_store.check_server(
        uri, cfg.tracking.server_wait_s, caller=cfg.runner.service_account, auth=cfg.tracking.auth
    )
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    if experiment is not None:
        check_artifact_location(uri, experiment)
        mlflow.set_experiment(experiment_id=experiment.experiment_id)
        return experiment.experiment_id
    location = None
    if uri.startswith("sqlite:") or "://" not in uri:
        location = "file://" + os.path.abspath(os.path.join(cfg.runner.work_dir, "mlartifacts"))
        fs.makedirs(os.path.join(cfg.runner.work_dir, "mlartifacts"))
    try:
        experiment_id = client.create_experiment(cfg.tracking.experiment, artifact_location=location)
    except mlflow.exceptions.MlflowException:  # created meanwhile by a concurrent task
        experiment_id = client.get_experiment_by_name(cfg.tracking.experiment).experiment_id
    if is_cloud_run_url(uri):
        check_artifact_location(uri, client.get_experiment(experiment_id))
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def check_artifact_location(uri: str, experiment: mlflow.entities.Experiment) -> None:
    """Refuses an experiment whose artifacts a Cloud Run server would carry.

    A location `mlflow-artifacts:/...` means MLflow's artifact proxy: every file is one request
    to the server, and Cloud Run refuses request bodies over 32 MiB, so a real model could not
    be registered (after its training). The server should hand out `gs://` locations
    (`--no-serve-artifacts --default-artifact-root gs://...`, as infra/terraform runs it), which
    clients write themselves; an experiment created before keeps its location.

    Raises:
        AlignPipeError: `uri` is a Cloud Run URL and the experiment's artifacts are proxied.
    """
    if is_cloud_run_url(uri) and experiment.artifact_location.startswith("mlflow-artifacts:"):
        raise AlignPipeError(
            f"MLflow experiment {experiment.name!r} at {uri} keeps its artifacts behind the server's "
            f"artifact proxy ({experiment.artifact_location}), and Cloud Run refuses request bodies "
            "over 32 MiB, so no real model can be registered: run the server with "
            "--no-serve-artifacts --default-artifact-root gs://BUCKET/mlflow (infra/terraform) and "
            "log to a new experiment (tracking.experiment)"
        )


def now_ms() -> int:
    return int(time.time() * 1000)


def start_pipeline_run(cfg: Config, pipeline_job: str) -> str:
    """Creates the RUNNING parent run of `pipeline_job` with the config as params."""
    experiment_id = connect(cfg)
    client = MlflowClient(tracking_uri(cfg))
    existing = find_pipeline_run(cfg, pipeline_job)
    if existing is not None:  # a retried first task
        return existing
    run = client.create_run(
        experiment_id,
        run_name=pipeline_job,
        tags={PIPELINE_JOB_TAG: pipeline_job, ROLE_TAG: "pipeline"},
    )
    params = [mlflow.entities.Param(k, _param_value(v)) for k, v in cfg.flat().items()]
    for i in range(0, len(params), 100):
        client.log_batch(run.info.run_id, params=params[i : i + 100])
    client.log_text(run.info.run_id, cfg.to_json(), "config.json")
    return run.info.run_id


def find_pipeline_run(cfg: Config, pipeline_job: str) -> str | None:
    """The parent run id of `pipeline_job`, or None."""
    experiment_id = connect(cfg)
    runs = MlflowClient(tracking_uri(cfg)).search_runs(
        [experiment_id],
        filter_string=f"tags.`{PIPELINE_JOB_TAG}` = '{pipeline_job}' and tags.`{ROLE_TAG}` = 'pipeline'",
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def finish_pipeline_run(cfg: Config, pipeline_job: str, succeeded: bool) -> str | None:
    """Ends the parent run as FINISHED or FAILED; returns its id (None if never started)."""
    run_id = find_pipeline_run(cfg, pipeline_job)
    if run_id is None:
        return None
    client = MlflowClient(tracking_uri(cfg))
    experiment_id = client.get_run(run_id).info.experiment_id
    stages = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{run_id}'")
    # The stages' headline numbers on the parent too, so pipeline runs compare side by side.
    now = int(time.time() * 1000)
    headline = [
        mlflow.entities.Metric(f"{run.data.tags.get(STAGE_TAG, run.info.run_name)}.{name}", value, now, 0)
        for run in stages
        for name, value in run.data.metrics.items()
    ]
    for i in range(0, len(headline), 500):
        client.log_batch(run_id, metrics=headline[i : i + 500])
    client.set_terminated(run_id, "FINISHED" if succeeded else "FAILED")
    return run_id


def last_stage_artifact(cfg: Config, stage: str, name: str) -> dict | None:
    """The JSON artifact `name` of the newest finished run of `stage` in the experiment, or None.

    For comparisons with the previous run (the filter's corpus statistics drift).
    """
    experiment_id = connect(cfg)
    client = MlflowClient(tracking_uri(cfg))
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{STAGE_TAG}` = '{stage}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=20,
    )
    for run in runs:
        if any(f.path == name for f in client.list_artifacts(run.info.run_id)):
            return mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/{name}")
    return None


@contextlib.contextmanager
def stage_run(
    cfg: Config, pipeline_job: str, stage: str, started_ms: int | None = None
) -> Iterator[mlflow.ActiveRun]:
    """An active MLflow run for one stage, nested under the pipeline's parent run.

    Args:
        cfg: the pipeline config.
        pipeline_job: the kfp pipeline-job name; empty for a standalone stage.
        stage: `scrape`, `filter`, `train`, `evaluate` or `register`.
        started_ms: the run's start time (`now_ms()`), for a run opened after the stage's
            work; default now.
    """
    experiment_id = connect(cfg)
    parent = find_pipeline_run(cfg, pipeline_job) if pipeline_job else None
    if pipeline_job and parent is None:
        raise AlignPipeError(
            f"no MLflow parent run for pipeline job {pipeline_job!r} at {tracking_uri(cfg)} "
            f"(experiment {cfg.tracking.experiment!r}): the start-tracking task creates it, so this "
            "task sees another tracking store; set tracking.tracking_uri to the one shared server"
        )
    tags = {STAGE_TAG: stage, ROLE_TAG: "stage"}
    if pipeline_job:
        tags[PIPELINE_JOB_TAG] = pipeline_job
    if started_ms is None:
        opened = mlflow.start_run(run_name=stage, parent_run_id=parent, nested=parent is not None, tags=tags)
    else:
        if parent is not None:
            tags[MLFLOW_PARENT_RUN_ID] = parent
        created = MlflowClient(tracking_uri(cfg)).create_run(
            experiment_id, start_time=started_ms, tags=resolve_tags(tags), run_name=stage
        )
        opened = mlflow.start_run(run_id=created.info.run_id)
    with opened as run:
        if parent is None:
            mlflow.log_params({k: _param_value(v) for k, v in cfg.flat().items()})
        yield run


def _param_value(value: object) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)
