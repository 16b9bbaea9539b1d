"""The pipeline's kfp components: typed signatures, each one call into `components.stages`.

These are lightweight `@dsl.component`s whose `base_image` is the project's own
image (the project installed, no `packages_to_install`), so the same component
runs in kfp's local SubprocessRunner and as a Vertex AI Pipelines task.
`build_components` binds the functions to the configured images.

The data steps hand Beam their artifacts' URIs (gs:// on Vertex AI, which Dataflow workers
read), never the /gcs/ mount paths that exist only inside the task's pod; train and evaluate
read and write through that mount.

Component bodies are shipped as source, so each imports what it uses; annotations
stay real objects (no `from __future__ import annotations`) because kfp reads them.
"""

import types
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Model, Output


def start_tracking(
    config_json: str,
    pipeline_job: str,
    experiment: str,
    source: str,
    seed_urls: str,
    input_paths: str,
    retrieval_sets: str,
    classification_sets: str,
    overrides: str,
) -> str:
    """Resolves the run's config from the template's and the run's parameters, opens the MLflow
    parent run of this pipeline run with it; returns the run's config JSON for every later task."""
    from components.parameters import run_config
    from components.tracking import start_pipeline_run

    cfg = run_config(
        config_json,
        experiment,
        overrides,
        source=source,
        seed_urls=seed_urls,
        input_paths=input_paths,
        retrieval_sets=retrieval_sets,
        classification_sets=classification_sets,
    )
    start_pipeline_run(cfg, pipeline_job)
    return cfg.to_json()


def scrape(config_json: str, pipeline_job: str, pairs: Output[Dataset], metrics: Output[Metrics]) -> bool:
    """Crawls the seed URLs (robots.txt obeyed) into (image, alt-text) pair shards. Returns
    False only when an incremental scrape found nothing new: the later steps are then skipped."""
    from components.stages import anything_new, scrape_stage

    return anything_new(config_json, scrape_stage(config_json, pipeline_job, pairs.uri, metrics))


def filter_pairs(
    config_json: str,
    pipeline_job: str,
    raw_pairs: Input[Dataset],
    pairs: Output[Dataset],
    metrics: Output[Metrics],
    funnel: Output[Markdown],
):
    """Applies ALIGN's image and text filters; writes kept pairs and the funnel."""
    from components.stages import filter_stage

    filter_stage(config_json, pipeline_job, raw_pairs.uri, pairs.uri, metrics, markdown_path=funnel.path)


def train(
    config_json: str, pipeline_job: str, pairs: Input[Dataset], model: Output[Model], metrics: Output[Metrics]
):
    """Trains the dual encoder with the contrastive loss; exports the model."""
    from components.stages import train_stage

    train_stage(config_json, pipeline_job, pairs.path, model.path, metrics)


def training_job(
    config_json: str, pipeline_job: str, pairs: Input[Dataset], model: Output[Model]
) -> NamedTuple(
    "CustomJob",
    [("worker_pool_specs", list), ("base_output_directory", str), ("timeout", str), ("strategy", str)],
):
    """The Vertex AI custom job that trains into `model` (`components.custom_job`), from the run's
    config: its worker pool, an output folder of this run's own (where its checkpoints go), its
    timeout and its scheduling strategy."""
    from alignpipe.config import Config
    from components.custom_job import base_output_directory, job_timeout, worker_pool_specs

    cfg = Config.from_json(config_json)
    return (  # in the order of the annotation's fields
        worker_pool_specs(cfg, config_json, pairs.path, model.path, pipeline_job),
        base_output_directory(model.uri),
        job_timeout(cfg),
        cfg.runner.train_scheduling,
    )


def evaluate(
    config_json: str,
    pipeline_job: str,
    model: Input[Model],
    metrics: Output[Metrics],
    champion_metrics: Output[Metrics],
    examples: Output[HTML],
):
    """Zero-shot retrieval R@1/5/10 both ways and zero-shot classification accuracy on every
    named set, for the new model and the registered champion (same sets, same run)."""
    from components.stages import evaluate_stage

    evaluate_stage(
        config_json,
        pipeline_job,
        model.path,
        metrics,
        report_path=examples.path,
        champion_metrics=champion_metrics,
    )


def register(
    config_json: str,
    pipeline_job: str,
    model: Input[Model],
    eval_metrics: Input[Metrics],
    champion_metrics: Input[Metrics],
) -> bool:
    """Registers the model in MLflow; returns whether it became the champion."""
    from components.stages import register_stage

    scored = dict(champion_metrics.metadata)
    version = scored.pop("model_version", None)
    champion = {"version": str(int(version)), "metrics": scored} if version is not None else None
    return register_stage(config_json, pipeline_job, model.path, dict(eval_metrics.metadata), champion)[
        "promoted"
    ]


def index_corpus(
    config_json: str,
    pipeline_job: str,
    model: Input[Model],
    pairs: Input[Dataset],
    index: Output[Artifact],
    metrics: Output[Metrics],
) -> str:
    """Embeds every kept image and its alt-texts with the model into the corpus index, kept at
    `index.path` (extended run after run) or, when that is empty, in the `index` artifact.
    Returns the index folder ("" when `index.enabled` is false)."""
    from alignpipe.config import Config
    from components.stages import index_stage

    cfg = Config.from_json(config_json)
    if not cfg.index.enabled:
        return ""
    out = cfg.index.path or index.uri
    index_stage(config_json, pipeline_job, model.uri, pairs.uri, out, metrics)
    index.metadata["index_uri"] = out
    return out


def finish_tracking(config_json: str, pipeline_job: str, overrides: str, status: dsl.PipelineTaskFinalStatus):
    """Ends the MLflow parent run with the pipeline's final state (exit handler). It runs even
    when the first task failed, so it reads the tracking settings from the template's config
    and the run's overrides itself."""
    from alignpipe.config import Config
    from components.parameters import run_config
    from components.tracking import finish_pipeline_run

    try:
        cfg = run_config(config_json, overrides=overrides)
    except Exception:  # the first task has reported the bad parameter; end the run anyway
        cfg = Config.from_json(config_json)
    finish_pipeline_run(cfg, pipeline_job, status.state == "SUCCEEDED")


TRAINER_STEPS = ("train", "evaluate")


def build_components(cfg) -> types.SimpleNamespace:
    """The components bound to the project's images (`runner.data_image` for data steps,
    `runner.trainer_image` for train and evaluate); `TRAINER_STEPS` names the latter."""
    data_image, trainer_image = cfg.runner.data_image, cfg.runner.trainer_image
    data = {
        "start_tracking": start_tracking,
        "training_job": training_job,
        "scrape": scrape,
        "filter_pairs": filter_pairs,
        "register": register,
        "index_corpus": index_corpus,
        "finish_tracking": finish_tracking,
    }
    trainer = {name: globals()[name] for name in TRAINER_STEPS}
    built = {
        name: dsl.component(fn, base_image=data_image, install_kfp_package=False) for name, fn in data.items()
    }
    built.update(
        {
            name: dsl.component(fn, base_image=trainer_image, install_kfp_package=False)
            for name, fn in trainer.items()
        }
    )
    return types.SimpleNamespace(**built)
