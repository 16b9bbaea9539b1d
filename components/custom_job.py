"""Training as a Vertex AI custom job: the worker pool that runs `trainer.task` on a TPU VM.

In the `vertex` preset (`runner.train_in_custom_job`) the pipeline's train step is a
`CustomTrainingJobOp` (google-cloud-pipeline-components) instead of a task container: pipeline
tasks get CPU and memory, a custom job gets a TPU. `training_job` (a lightweight task) computes
the job's worker pool from the run's config and the artifacts' paths; the job writes the model
into that task's `model` artifact, which evaluate and register then read.

Topology: one replica (Vertex AI TPU jobs are single-host). `cloud-tpu` with TPU_V3 x 8 (or
TPU_V2) runs TensorFlow's TPUStrategy on the VM's own TPU (`TPUClusterResolver(tpu="local")`,
`train.strategy=tpu`). TPU v5e / v6e machines (`ct5lp-hightpu-4t`, `ct6e-standard-4t` with
`runner.train_tpu_topology`) have no TensorFlow support: they need Keras 3 on the JAX backend,
which this trainer does not use yet.

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


def worker_pool_specs(
    cfg: Config, config_json: str, data_dir: str, model_dir: str, pipeline_job: str
) -> list[dict]:
    """The custom job's `worker_pool_specs`: one `runner.train_machine_type` worker running the
    trainer image's `trainer.task` on the run's config, logging to the pipeline's MLflow run."""
    r = cfg.runner
    machine: dict[str, object] = {"machine_type": r.train_machine_type}
    if r.train_accelerator_type:
        machine.update(accelerator_type=r.train_accelerator_type, accelerator_count=r.train_accelerator_count)
    if r.train_tpu_topology:
        machine["tpu_topology"] = r.train_tpu_topology
    args = ["--config-json", config_json, "--data-dir", data_dir, "--model-dir", model_dir]
    return [
        {
            "machine_spec": machine,
            "replica_count": 1,
            "container_spec": {
                "image_uri": r.trainer_image,
                "command": TRAINER_COMMAND,
                "args": args + ["--pipeline-job", pipeline_job],
            },
        }
    ]
