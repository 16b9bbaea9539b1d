"""The stages as plain functions: core call + MLflow logging.

kfp components (`components/ops.py`) and the CLI's stage commands call exactly
these, so a stage behaves the same in a DAG and on its own. `pipeline_job` names
the kfp pipeline run whose MLflow parent run the stage nests under; it is empty
for a standalone stage. `metrics`, when given, is a kfp `Metrics` artifact (or
anything with `log_metric(name, value)`) that receives the stage's headline
numbers for the kfp UI.
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Protocol

import mlflow

from alignpipe import fs
from alignpipe.config import Config
from components import mlflow_store, tracking

log = logging.getLogger("alignpipe")


class MetricsSink(Protocol):
    def log_metric(self, metric: str, value: float) -> None: ...


def _publish(metrics: MetricsSink | None, values: dict[str, float]) -> None:
    mlflow.log_metrics(values)
    if metrics is not None:
        for name, value in values.items():
            metrics.log_metric(name, float(value))


def scrape_stage(
    config_json: str, pipeline_job: str, out_dir: str, metrics: MetricsSink | None = None
) -> dict:
    """Scrapes `scrape.source` (a crawl, URL lists or WARC files); pair shards + manifest go to `out_dir`."""
    from alignpipe.data.scrape import run_scrape

    cfg = Config.from_json(config_json)
    # The run opens when the scrape ends, with its start time, so that a new local store is
    # set up meanwhile on another core.
    started = tracking.now_ms()
    mlflow_store.prepare(cfg)
    try:
        report = run_scrape(cfg, out_dir).to_dict()
    except Exception:
        with tracking.stage_run(cfg, pipeline_job, "scrape", started_ms=started):
            raise  # recorded as a FAILED run
    with tracking.stage_run(cfg, pipeline_job, "scrape", started_ms=started):
        values = {k: float(v) for k, v in report.items() if isinstance(v, (int, float))}
        values.update({f"outcome.{k.replace('/', '.')}": float(v) for k, v in report["outcomes"].items()})
        _publish(metrics, values)
        mlflow.log_dict(report, "scrape_report.json")
    return report


def anything_new(config_json: str, report: dict) -> bool:
    """Whether a scrape leaves anything to train on: always, unless it was incremental
    (`scrape.state_dir`) and wrote no pair (a scheduled run over an unchanged web)."""
    cfg = Config.from_json(config_json)
    if cfg.scrape.state_dir and not report["pairs_written"]:
        log.info("nothing new since the last scrape (scrape.state_dir): the later steps are skipped")
        return False
    return True


def filter_stage(
    config_json: str,
    pipeline_job: str,
    in_dir: str,
    out_dir: str,
    metrics: MetricsSink | None = None,
    markdown_path: str = "",
) -> dict:
    """Applies ALIGN's filters to the pairs in `in_dir`; kept pairs and the funnel go to `out_dir`.

    `markdown_path`, when given, receives the funnel as a Markdown table (for the kfp UI).
    """
    from alignpipe.data.eval_sets import classification_sets, retrieval_sets
    from alignpipe.filtering.contamination import CONTAMINATION_JSONL, contamination_counts
    from alignpipe.filtering.funnel import funnel_markdown
    from alignpipe.filtering.pipeline import run_filter
    from alignpipe.filtering.stats import DRIFT_JSON, STATS_JSON, STATS_PNG, stats_metrics

    cfg = Config.from_json(config_json)
    previous = tracking.last_stage_artifact(cfg, "filter", STATS_JSON)  # the drift baseline
    with tracking.stage_run(cfg, pipeline_job, "filter"):
        report = run_filter(cfg, in_dir, out_dir, previous_stats=previous)
        funnel = report.to_dict()
        stats, drift = fs.read_json(fs.join(out_dir, STATS_JSON)), fs.read_json(fs.join(out_dir, DRIFT_JSON))
        if markdown_path:
            summary = f"\n\nCorpus statistics: {drift['summary']}\n"
            fs.write_text(markdown_path, funnel_markdown(report) + summary)
        values = {"input_pairs": funnel["input_pairs"], "kept_pairs": funnel["kept_pairs"]}
        values.update({f"dropped.{reason}": n for reason, n in funnel["dropped"].items()})
        values.update(stats_metrics(stats, drift))
        sets = [name for name, _ in retrieval_sets(cfg.eval) + classification_sets(cfg.eval)]
        values.update({f"contamination.{k}": n for k, n in contamination_counts(out_dir, sets).items()})
        _publish(metrics, values)
        mlflow.log_dict(funnel, "funnel.json")
        mlflow.log_dict(stats, STATS_JSON)
        mlflow.log_dict(drift, DRIFT_JSON)
        for name in ("funnel.png", STATS_PNG, CONTAMINATION_JSONL):
            if fs.exists(fs.join(out_dir, name)):
                mlflow.log_artifact(_local(fs.join(out_dir, name)))
    return funnel


def train_stage(
    config_json: str, pipeline_job: str, data_dir: str, model_dir: str, metrics: MetricsSink | None = None
) -> dict:
    """Trains the dual encoder on the pairs in `data_dir`; writes the model into `model_dir`.

    A rerun (a retried task, or after SIGTERM, which raises `Preempted`) resumes from the
    latest checkpoint in `train.checkpoint_dir` (default `<model_dir>-checkpoints`).
    """
    from alignpipe.training.trainer import train

    cfg = Config.from_json(config_json)
    with tracking.stage_run(cfg, pipeline_job, "train"), tempfile.TemporaryDirectory() as tmp:

        def on_log(row: dict) -> None:
            step = int(row["step"])
            mlflow.log_metrics({k: float(v) for k, v in row.items() if k != "step"}, step=step)

        init_dir = _warm_start_dir(cfg, tmp)
        result = train(cfg, data_dir, model_dir, on_log=on_log, init_dir=init_dir)
        summary = {
            "train_steps": result.steps,
            "num_pairs": result.num_pairs,
            "train_seconds": result.seconds,
            "first_loss": result.history[0]["loss"] if result.history else float("nan"),
            "final_loss": result.final_loss,
            "final_temperature": result.final_temperature,
            "resumed_from_step": result.resumed_from_step,
        }
        _publish(metrics, summary)
        for name in ("training_curves.png", "history.json"):
            path = fs.join(model_dir, name)
            if fs.exists(path):
                mlflow.log_artifact(_local(path))
    return summary


def _warm_start_dir(cfg: Config, tmp: str) -> str:
    """The model folder `train.init_from` names ("champion": the registered champion, downloaded
    into `tmp`); "" to train from scratch. Tagged on the stage's MLflow run as `warm_start`."""
    from components.registry import champion_model_dir

    source = cfg.train.init_from
    if source == "champion":
        found = champion_model_dir(cfg, tmp)
        if found is None:
            log.info("train.init_from=champion: no champion of %r yet; from scratch", cfg.register.model_name)
            source = ""
        else:
            version, folder = found
            mlflow.set_tag("warm_start", f"models:/{cfg.register.model_name}/{version} (champion)")
            return folder
    if source:
        mlflow.set_tag("warm_start", source)
    return source


def evaluate_stage(
    config_json: str,
    pipeline_job: str,
    model_dir: str,
    metrics: MetricsSink | None = None,
    report_path: str = "",
    champion_metrics: MetricsSink | None = None,
) -> dict:
    """Zero-shot retrieval and classification of the model in `model_dir` on every configured
    set, and of the registered champion (if any) on the same sets, for `register_stage`.

    Returns:
        `{"challenger": {<set>/<metric>: value}, "champion": {"version", "metrics"} or None}`;
        the champion's metrics go to MLflow as `champion/<set>/<metric>` and, with its
        `model_version`, to `champion_metrics`.
    """
    from alignpipe.evaluation.evaluate import evaluate
    from alignpipe.evaluation.examples_html import write_retrieval_examples_html

    cfg = Config.from_json(config_json)
    with tracking.stage_run(cfg, pipeline_job, "evaluate"):
        result = evaluate(cfg, model_dir)
        _publish(metrics, result.metrics)
        html = os.path.join(tempfile.mkdtemp(), "retrieval_examples.html")
        write_retrieval_examples_html(result, html)
        mlflow.log_artifact(html)
        if report_path:
            fs.write_bytes(report_path, fs.read_bytes(html))
        champion = _evaluate_champion(cfg)
        if champion is not None:
            mlflow.set_tag("champion_version", champion["version"])
            mlflow.log_metrics({f"champion/{k}": v for k, v in champion["metrics"].items()})
            if champion_metrics is not None:
                champion_metrics.log_metric("model_version", float(champion["version"]))
                for name, value in champion["metrics"].items():
                    champion_metrics.log_metric(name, float(value))
    return {"challenger": dict(result.metrics), "champion": champion}


def _evaluate_champion(cfg: Config) -> dict | None:
    """`{"version", "metrics"}` of the registry's champion scored on `cfg`'s sets; its
    `metrics` are empty when it cannot be loaded or scored (the reason is logged)."""
    from alignpipe.errors import AlignPipeError
    from alignpipe.evaluation.evaluate import evaluate
    from components.registry import champion_model_dir

    with tempfile.TemporaryDirectory() as tmp:
        found = champion_model_dir(cfg, tmp)
        if found is None:
            log.info("evaluate: %s has no champion yet", cfg.register.model_name)
            return None
        version, model_dir = found
        log.info("evaluate: scoring the champion, version %s, on the same sets", version)
        try:
            return {"version": version, "metrics": dict(evaluate(cfg, model_dir).metrics)}
        except (AlignPipeError, OSError, ValueError) as e:
            log.warning("evaluate: the champion (version %s) cannot be scored: %s", version, e)
            mlflow.set_tag("champion_error", str(e)[:500])
            return {"version": version, "metrics": {}}


def register_stage(
    config_json: str,
    pipeline_job: str,
    model_dir: str,
    eval_metrics: dict[str, float],
    champion: dict | None = None,
) -> dict:
    """Registers the model; moves the champion alias only if it beats the champion as scored in
    the same evaluation (`evaluate_stage`'s `champion`) by `register.margin`."""
    from components.registry import register_model

    cfg = Config.from_json(config_json)
    with tracking.stage_run(cfg, pipeline_job, "register"):
        decision = register_model(cfg, model_dir, eval_metrics, champion)
    return decision


def index_stage(
    config_json: str,
    pipeline_job: str,
    model: str,
    data_dir: str,
    out_dir: str,
    metrics: MetricsSink | None = None,
) -> dict:
    """Embeds the kept pairs in `data_dir` with `model` into the corpus index at `out_dir`
    (`alignpipe.search.build_index`): extended when it was built by the same model.

    Args:
        model: a model folder written by train, or a registered model `models:/NAME/VERSION`
            (or `models:/NAME@ALIAS`), downloaded first.
        out_dir: the index folder (local or gs://).

    Returns:
        The `IndexReport` as a dict; the MLflow run gets the model's URI and version as params,
        the counts as metrics and the report as `index_report.json`.
    """
    from alignpipe.search.build_index import build_index

    cfg = Config.from_json(config_json)
    with tracking.stage_run(cfg, pipeline_job, "index"), tempfile.TemporaryDirectory() as tmp:
        model_uri = model
        if model.startswith("models:/"):
            model = _registered_model_dir(model, tmp)
        elif pipeline_job:
            model_uri = _registered_uri(cfg, pipeline_job) or model
        report = build_index(cfg, model, data_dir, out_dir, model_uri=model_uri).to_dict()
        mlflow.log_params(
            {
                "index.model_uri": model_uri,
                "index.model_fingerprint": report["model_fingerprint"],
                "index.uri": out_dir,
            }
        )
        mlflow.set_tags({"index_uri": out_dir, "index_model_uri": model_uri})
        if report["rebuilt"]:
            mlflow.set_tag("index_rebuilt", report["rebuilt"])
        counts = ("items", "texts", "images_embedded", "texts_embedded", "items_kept", "seconds")
        counts += ("undecodable_images", "undecodable_image_texts")
        _publish(metrics, {f"index_{k}" if k == "seconds" else k: float(report[k]) for k in counts})
        mlflow.log_dict(report, "index_report.json")
    return report


def _registered_model_dir(model_uri: str, tmp: str) -> str:
    """The model folder of a registered model version, downloaded into `tmp`."""
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    from alignpipe.errors import InputError
    from alignpipe.model.encoder import CONFIG_FILE

    try:
        root = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp)
    except MlflowException as e:
        raise InputError(f"model {model_uri!r} cannot be downloaded: {e}") from None
    for folder, _, files in os.walk(root):
        if CONFIG_FILE in files:
            return folder
    raise InputError(f"model {model_uri!r} holds no model folder ({CONFIG_FILE})")


def _registered_uri(cfg: Config, pipeline_job: str) -> str:
    """`models:/NAME/VERSION` of the version the register stage of `pipeline_job` registered,
    or "" when it has none (the stage failed or is not in the run)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking.tracking_uri(cfg))
    query = (
        f"tags.`{tracking.PIPELINE_JOB_TAG}` = '{pipeline_job}' and tags.`{tracking.STAGE_TAG}` = 'register'"
    )
    runs = client.search_runs([tracking.connect(cfg)], query, max_results=1)
    version = runs[0].data.tags.get("model_version") if runs else None
    return f"models:/{cfg.register.model_name}/{version}" if version else ""


def _local(path: str) -> str:
    """A local copy of `path` for MLflow's artifact upload (a no-op for local paths)."""
    if "://" not in path:
        return path
    target = os.path.join(tempfile.mkdtemp(), os.path.basename(path))
    with open(target, "wb") as f:
        f.write(fs.read_bytes(path))
    return target
