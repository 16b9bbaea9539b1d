"""Training as a Vertex AI custom job: the worker pool that runs `trainer.task` on a TPU VM.

In the `vertex` preset (`runner.train_in_custom_job`) the pipeline's train step is a
`CustomTrainingJobOp` (google-cloud-pipeline-components) instead of a task container: pipeline
tasks get CPU and memory, a custom job gets a TPU. `training_job` (a lightweight task) computes
the job's worker pool from the run's config and the artifacts' paths; the job writes the model
into that task's `model` artifact, which evaluate and register then read.

Machines: `runner.accelerator` x `runner.accelerator_chips` names a slice
(`alignpipe.config.accelerators`): its machine type, TPU topology or GPUs, and one worker
replica per VM (a multi-host TPU slice runs the trainer on each of its VMs), in the image of
its kind (`runner.trainer_image` on CPUs, `runner.trainer_tpu_image` on TPUs,
`runner.trainer_gpu_image` on GPUs). The job's timeout is the run's steps x the step time
(`alignpipe.config.footprint.job_timeout_s`), and `runner.train_scheduling` picks on-demand,
Spot or flex-start capacity.

Outputs: each job gets a `base_output_directory` of its own, beside the run's `model` artifact
(`<pipeline_root>/<project number>/<pipeline job>/training-job_<id>/custom-job`). Vertex AI
derives `AIP_CHECKPOINT_DIR` (`<base_output_directory>/checkpoints/`) from it, which
`trainer.task` adopts: a restarted or preempted worker of one job resumes from that job's
checkpoints, and no other run ever reads them (one folder shared by all runs would make every
later run restore the first run's final checkpoint instead of training).

Paths are the workers' Cloud Storage FUSE mounts (`/gcs/BUCKET/...`, which Vertex AI mounts in
custom jobs as in pipeline tasks), so the trainer reads and writes them as local files.
"""

from __future__ import annotations

from alignpipe.config import Config
from alignpipe.config.accelerators import slice_of
from alignpipe.config.footprint import job_timeout_s

TRAINER_COMMAND = ["python", "-m", "trainer.task"]
JOB_OUTPUT_FOLDER = "custom-job"


def base_output_directory(model_uri: str) -> str:
    """The custom job's output folder: `custom-job` beside the `model` artifact at `model_uri`
    (a gs:// URI on Vertex AI), in the folder of the task that specified the job, which is
    unique to one pipeline run.

    Example:
        >>> base_output_directory("gs://b/root/123/align-20300101/training-job_7/model")
        'gs://b/root/123/align-20300101/training-job_7/custom-job'
    """
    task_folder = model_uri.rstrip("/").rsplit("/", 1)[0]
    return f"{task_folder}/{JOB_OUTPUT_FOLDER}"


def trainer_image_kind(cfg: Config) -> str:
    """Which build of the trainer image the custom job runs: cpu, tpu or gpu
    (infra/docker/trainer.Dockerfile's ACCELERATOR)."""
    return slice_of(cfg.runner.accelerator, cfg.runner.accelerator_chips).spec.kind


def trainer_image(cfg: Config) -> str:
    """The image the custom job runs: the trainer image of the accelerator's kind."""
    r = cfg.runner
    return {"cpu": r.trainer_image, "tpu": r.trainer_tpu_image, "gpu": r.trainer_gpu_image}[
        trainer_image_kind(cfg)
    ]


def worker_pool_specs(
    cfg: Config, config_json: str, data_dir: str, model_dir: str, pipeline_job: str
) -> list[dict]:
    """The custom job's `worker_pool_specs`: one pool of the slice's VMs, each running
    `trainer.task` on the run's config, logging to the pipeline's MLflow run."""
    r = cfg.runner
    pool = slice_of(r.accelerator, r.accelerator_chips)
    machine: dict[str, object] = {"machine_type": pool.machine_type}
    if pool.accelerator_type:
        machine.update(accelerator_type=pool.accelerator_type, accelerator_count=pool.accelerator_count)
    if pool.tpu_topology:
        machine["tpu_topology"] = pool.tpu_topology
    args = ["--config-json", config_json, "--data-dir", data_dir, "--model-dir", model_dir]
    return [
        {
            "machine_spec": machine,
            "replica_count": pool.hosts,
            "container_spec": {
                "image_uri": trainer_image(cfg),
                "command": TRAINER_COMMAND,
                "args": args + ["--pipeline-job", pipeline_job],
            },
        }
    ]


def job_timeout(cfg: Config) -> str:
    """The custom job's `timeout` as Vertex AI takes it (seconds, e.g. `"3600s"`)."""
    return f"{job_timeout_s(cfg)}s"
