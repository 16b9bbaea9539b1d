"""The ALIGN DAG: scrape -> filter -> train -> evaluate -> register.

The same pipeline function runs under kfp's local runner and compiles to the
YAML that Vertex AI Pipelines (or Kubeflow) executes. The whole config travels
as one JSON string parameter; the MLflow parent run is keyed by the kfp
pipeline-job name and closed by an exit handler whatever happens.
"""

from kfp import compiler, dsl

from alignpipe.config import Config
from components.ops import build_components

PIPELINE_NAME = "align"


def build_pipeline(cfg: Config):
    """The `@dsl.pipeline` function for `cfg`'s images, with `cfg` as the default config."""
    ops = build_components(cfg.runner.data_image, cfg.runner.trainer_image)

    @dsl.pipeline(name=PIPELINE_NAME, description="ALIGN: noisy alt-text pairs -> dual encoder.")
    def align_pipeline(config_json: str = cfg.to_json()):
        job = dsl.PIPELINE_JOB_NAME_PLACEHOLDER
        finish = ops.finish_tracking(config_json=config_json, pipeline_job=job).set_display_name(
            "finish-tracking"
        )
        with dsl.ExitHandler(finish):
            start = ops.start_tracking(config_json=config_json, pipeline_job=job)
            scraped = ops.scrape(config_json=config_json, pipeline_job=job).after(start)
            filtered = ops.filter_pairs(
                config_json=config_json, pipeline_job=job, raw_pairs=scraped.outputs["pairs"]
            )
            trained = ops.train(config_json=config_json, pipeline_job=job, pairs=filtered.outputs["pairs"])
            evaluated = ops.evaluate(
                config_json=config_json, pipeline_job=job, model=trained.outputs["model"]
            )
            ops.register(
                config_json=config_json,
                pipeline_job=job,
                model=trained.outputs["model"],
                eval_metrics=evaluated.outputs["metrics"],
                champion_metrics=evaluated.outputs["champion_metrics"],
            )

    return align_pipeline


def compile_pipeline(cfg: Config, path: str) -> str:
    """Writes the pipeline spec YAML for `cfg` to `path`."""
    compiler.Compiler().compile(build_pipeline(cfg), package_path=path)
    return path
