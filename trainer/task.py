"""Training entry point for a Vertex AI custom job (CPU, GPU or TPU workers).

    python -m trainer.task --config-json "$(cat config.json)" \
        --data-dir gs://BUCKET/run/filtered --model-dir gs://BUCKET/run/model

`--model-dir` defaults to `$AIP_MODEL_DIR`, which Vertex AI sets for custom jobs, and
an empty `train.checkpoint_dir` to `$AIP_CHECKPOINT_DIR` when Vertex AI sets it (from the
job's `base_output_directory`, which the pipeline makes one per run, so that only a
restarted worker of the same job resumes from it: docs/training.md). On
SIGTERM (Vertex AI's notice before it stops or preempts a worker) training saves a
checkpoint and the task exits with status 143 (128 + SIGTERM); Vertex AI restarts a
worker that exits non-zero, and the rerun resumes from that checkpoint.
The backend (`train.backend`: tensorflow, jax) and, on TensorFlow, the strategy
(`train.strategy`: default, mirrored, tpu) come from the config, so the same code
trains on a laptop, a GPU VM and a TPU slice; `KERAS_BACKEND` is set from the config
before Keras is imported. A multi-process JAX run (a multi-host TPU slice, several GPU
VMs) joins its processes with `jax.distributed.initialize`, from `JAX_COORDINATOR_ADDRESS` /
`JAX_NUM_PROCESSES` / `JAX_PROCESS_ID`, else from the `CLUSTER_SPEC` Vertex AI sets on every
replica of a multi-replica job, else (a multi-host TPU slice) from the TPU VMs' own metadata
(`alignpipe.training.processes`).
Metrics go to the job's log and, with `--pipeline-job` (the pipeline's custom-job step,
`components/custom_job.py`), to that pipeline run's MLflow train stage, as the kfp train
component logs them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys

from alignpipe.config import Config
from alignpipe.errors import AlignPipeError

log = logging.getLogger("alignpipe")

EXIT_PREEMPTED = 128 + signal.SIGTERM  # what a shell reports for a process that SIGTERM ended


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="trainer.task", description=__doc__.split("\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config-json", help="the pipeline config as a JSON string")
    source.add_argument("--config-file", help="path of the pipeline config JSON")
    parser.add_argument("--data-dir", required=True, help="folder of filtered pair shards")
    parser.add_argument("--model-dir", default=None, help="output model folder (default $AIP_MODEL_DIR)")
    parser.add_argument(
        "--pipeline-job",
        default="",
        help="the kfp pipeline job whose MLflow run this training nests under (tracking.tracking_uri)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    model_dir = args.model_dir or os.environ.get("AIP_MODEL_DIR")
    try:
        if not model_dir:
            raise AlignPipeError("no model folder: pass --model-dir or set AIP_MODEL_DIR")
        if args.config_file:
            from alignpipe import fs

            text = fs.read_text(args.config_file)
        else:
            text = args.config_json
        cfg = Config.from_json(text)
        if not cfg.train.checkpoint_dir and os.environ.get("AIP_CHECKPOINT_DIR"):
            cfg = cfg.replace(train__checkpoint_dir=os.environ["AIP_CHECKPOINT_DIR"])
            log.info("checkpoints: %s ($AIP_CHECKPOINT_DIR)", cfg.train.checkpoint_dir)
        _start_backend(cfg)
        from alignpipe.training.checkpoints import Preempted

        try:
            summary = _train(cfg, args.data_dir, model_dir, args.pipeline_job)
        except Preempted as e:
            print(f"trainer.task: {e}", file=sys.stderr)
            return EXIT_PREEMPTED
    except AlignPipeError as e:
        print(f"trainer.task: error: {e}", file=sys.stderr)
        return 2
    log.info(
        "trained %d steps on %d pairs; model in %s", summary["train_steps"], summary["num_pairs"], model_dir
    )
    return 0


def _start_backend(cfg: Config) -> None:
    """Keras on `train.backend`; on JAX, the processes of a multi-process run joined
    (`alignpipe.training.processes` says how each finds the others)."""
    from alignpipe.training.backend import select_keras_backend

    select_keras_backend(cfg.train.backend)
    if cfg.train.backend != "jax":
        return
    from alignpipe.config.accelerators import slice_of
    from alignpipe.training.jax_trainer import initialize_processes
    from alignpipe.training.processes import process_group

    group = process_group(os.environ)
    if group is not None:
        log.info("process %d of %d, coordinator %s", group.process_id, group.num_processes, group.coordinator)
        initialize_processes(group.coordinator, group.num_processes, group.process_id)
        return
    pool = slice_of(cfg.runner.accelerator, cfg.runner.accelerator_chips)
    if pool.spec.kind == "tpu" and pool.hosts > 1:
        import jax

        log.info("a %d-VM TPU slice: JAX finds its processes from the TPU VMs' metadata", pool.hosts)
        jax.distributed.initialize()


def _train(cfg: Config, data_dir: str, model_dir: str, pipeline_job: str) -> dict:
    """Trains; inside a pipeline run (`pipeline_job`) as its MLflow train stage, else logging only."""
    if pipeline_job:
        from components.stages import train_stage

        return train_stage(cfg.to_json(), pipeline_job, data_dir, model_dir)
    from alignpipe.training.trainer import train

    result = train(cfg, data_dir, model_dir, on_log=lambda row: log.info("%s", json.dumps(row)))
    return {"train_steps": result.steps, "num_pairs": result.num_pairs}


if __name__ == "__main__":
    sys.exit(main())
