"""The whole DAG with every task in the project's images, through kfp's DockerRunner.

`make test-docker` builds the images and runs these; they need a Docker engine and fail
without one (`make test` leaves them out).
"""

from __future__ import annotations

import os

import pytest
from mlflow.tracking import MlflowClient

from alignpipe.config import load_config
from components.tracking import ROLE_TAG, STAGE_TAG
from tests.pipelines.conftest import run_cli

pytestmark = [pytest.mark.docker, pytest.mark.large]

CFG = load_config()
IMAGES = (CFG.runner.data_image, CFG.runner.trainer_image)


@pytest.fixture(scope="module")
def docker_run(mlflow_server, tmp_path_factory):
    work = tmp_path_factory.mktemp("docker-work")
    proc = run_cli("run", "--runner", "docker", "--work-dir", str(work), "--tracking-uri", mlflow_server)
    assert proc.returncode == 0, f"{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}"
    return {"work_dir": str(work), "stdout": proc.stdout, "tracking_uri": mlflow_server}


def test_every_task_ran_in_the_project_images(docker_run):
    out = docker_run["stdout"]
    for image in IMAGES:
        assert f"Found image {image!r}" in out  # kfp's DockerRunner, about to start a container
    assert "Pulling image" not in out


def test_the_run_is_tracked_like_a_local_one(docker_run):
    client = MlflowClient(docker_run["tracking_uri"])
    experiment = client.get_experiment_by_name("alignpipe")
    (parent,) = client.search_runs([experiment.experiment_id], f"tags.`{ROLE_TAG}` = 'pipeline'")
    children = client.search_runs(
        [experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    stages = {c.data.tags[STAGE_TAG]: c for c in children}
    assert parent.info.status == "FINISHED"
    assert set(stages) == {"scrape", "filter", "train", "evaluate", "register", "index"}
    assert stages["scrape"].data.metrics["pairs_written"] >= 2000
    assert stages["evaluate"].data.metrics["demo/image_to_text_r1"] > 0.2  # it learned, far above chance
    assert stages["register"].data.tags["decision"] == "promoted"


def test_outputs_belong_to_the_caller(docker_run):
    root = os.path.join(docker_run["work_dir"], "kfp-root")
    owners = {os.stat(os.path.join(d, f)).st_uid for d, _, files in os.walk(root) for f in files}
    assert owners == {os.getuid()}


def test_a_missing_image_is_one_clear_error(tmp_path):
    proc = run_cli(
        "run", "--runner", "docker", "--work-dir", str(tmp_path),
        "--set", "runner.trainer_image=alignpipe-trainer:no-such-tag",
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "alignpipe-trainer:no-such-tag is not built" in proc.stderr
    assert "make docker-images" in proc.stderr
