"""The ALIGN DAG: scrape -> filter -> train -> evaluate -> register -> index (the corpus index,
when `index.enabled`); all after scrape skipped when an incremental scrape found nothing new.

The same pipeline function runs under kfp's local runner and compiles to the
YAML that Vertex AI Pipelines (or Kubeflow) executes. The whole config travels
as one JSON string parameter; the MLflow parent run is keyed by the kfp
pipeline-job name and closed by an exit handler whatever happens.
"""

from kfp import compiler, dsl

from alignpipe.config import Config
from alignpipe.config.validation import check_vertex_images
from components.ops import build_components
from components.parameters import parameter_defaults

PIPELINE_NAME = "align"


def build_pipeline(cfg: Config):
    """The `@dsl.pipeline` function for `cfg`'s images, with `cfg` as the default config.

    Its parameters (`components.parameters`) let each run of one compiled template choose the
    experiment preset, the input, the evaluation sets and any overrides; their defaults
    reproduce `cfg`.
    """
    ops = build_components(cfg)
    default = parameter_defaults(cfg)

    def sized(task, trainer: bool = False):
        """Sets the task's CPU and memory requests and retries from `runner.*` (not for the local
        runner, which ignores them with a warning per task)."""
        if cfg.env == "local":
            return task
        r = cfg.runner
        cpu, memory = (
            (r.trainer_task_cpu, r.trainer_task_memory) if trainer else (r.data_task_cpu, r.data_task_memory)
        )
        task.set_cpu_limit(cpu).set_memory_limit(memory)
        return task.set_retry(r.task_retries) if r.task_retries else task

    def custom_job_training(config_json, job, pairs):
        """(the model artifact, the task that fills it): a Vertex AI custom job on the run's slice
        (`runner.accelerator`), writing into the `model` artifact of the task that specified it."""
        from google_cloud_pipeline_components.v1.custom_job import CustomTrainingJobOp

        r = cfg.runner
        spec = sized(ops.training_job(config_json=config_json, pipeline_job=job, pairs=pairs))
        trained = CustomTrainingJobOp(
            display_name="align-train",
            project=r.gcp_project,
            location=r.gcp_region,
            worker_pool_specs=spec.outputs["worker_pool_specs"],
            service_account=r.service_account,
            # this run's own folder: Vertex AI's AIP_CHECKPOINT_DIR, which trainer.task resumes from
            base_output_directory=spec.outputs["base_output_directory"],
            timeout=spec.outputs["timeout"],
            restart_job_on_worker_restart=True,  # a preempted worker restarts and resumes
            strategy=spec.outputs["strategy"],
        ).set_display_name("train")
        return spec.outputs["model"], trained

    def steps_after_scrape(config_json, job, scraped):
        """filter -> train -> evaluate -> register (-> index), on the scrape's pairs."""
        filtered = sized(
            ops.filter_pairs(config_json=config_json, pipeline_job=job, raw_pairs=scraped.outputs["pairs"])
        )
        if cfg.runner.train_in_custom_job:
            model, trained = custom_job_training(config_json, job, filtered.outputs["pairs"])
        else:
            trained = sized(
                ops.train(config_json=config_json, pipeline_job=job, pairs=filtered.outputs["pairs"]),
                trainer=True,
            )
            model = trained.outputs["model"]
        evaluated = sized(
            ops.evaluate(config_json=config_json, pipeline_job=job, model=model).after(trained),
            trainer=True,
        )
        registered = sized(
            ops.register(
                config_json=config_json,
                pipeline_job=job,
                model=model,
                eval_metrics=evaluated.outputs["metrics"],
                champion_metrics=evaluated.outputs["champion_metrics"],
            )
        )
        if cfg.index.enabled:
            sized(
                ops.index_corpus(
                    config_json=config_json, pipeline_job=job, model=model, pairs=filtered.outputs["pairs"]
                ).after(registered)
            )

    @dsl.pipeline(name=PIPELINE_NAME, description="ALIGN: noisy alt-text pairs -> dual encoder.")
    def align_pipeline(
        config_json: str = cfg.to_json(),
        experiment: str = default["experiment"],
        source: str = default["source"],
        seed_urls: str = default["seed_urls"],
        input_paths: str = default["input_paths"],
        retrieval_sets: str = default["retrieval_sets"],
        classification_sets: str = default["classification_sets"],
        overrides: str = default["overrides"],
    ):
        job = dsl.PIPELINE_JOB_NAME_PLACEHOLDER
        finish = sized(ops.finish_tracking(config_json=config_json, pipeline_job=job, overrides=overrides))
        with dsl.ExitHandler(finish.set_display_name("finish-tracking")):
            start = ops.start_tracking(
                config_json=config_json,
                pipeline_job=job,
                experiment=experiment,
                source=source,
                seed_urls=seed_urls,
                input_paths=input_paths,
                retrieval_sets=retrieval_sets,
                classification_sets=classification_sets,
                overrides=overrides,
            )
            sized(start)
            config_json = start.output  # the run's config, for every later task
            scraped = sized(ops.scrape(config_json=config_json, pipeline_job=job))
            # An incremental scrape that found nothing new ends the run: same data, same model.
            with dsl.If(scraped.outputs["Output"] == True, name="anything-new"):  # noqa: E712
                steps_after_scrape(config_json, job, scraped)

    return align_pipeline


def compile_pipeline(cfg: Config, path: str) -> str:
    """Writes the pipeline spec YAML for `cfg` to `path`.

    Raises:
        ConfigError: on Vertex AI, an image that is not registry-qualified (its tasks could not pull it).
    """
    if cfg.env == "vertex":
        check_vertex_images(cfg)
    compiler.Compiler().compile(build_pipeline(cfg), package_path=path)
    return path
