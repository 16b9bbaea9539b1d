"""What a pipeline run produced, read back from MLflow, and its one-screen rendering."""

from __future__ import annotations

import os
import sys

from mlflow.tracking import MlflowClient

from alignpipe.config import Config
from alignpipe.filtering.rules import REASONS
from components import tracking

STAGES = ("scrape", "filter", "train", "evaluate", "register", "index")


def pipeline_summary(cfg: Config, since: float = 0.0, pipeline_job: str = "") -> dict:
    """The newest pipeline run (started after `since`, epoch seconds) and its stage runs.

    Returns:
        `{"parent_run_id", "pipeline_job", "status", "stages": {stage: {"run_id", "status",
        "metrics", "tags"}}}`.
    """
    experiment_id = tracking.connect(cfg)
    client = MlflowClient(tracking.tracking_uri(cfg))
    query = f"tags.`{tracking.ROLE_TAG}` = 'pipeline'"
    if pipeline_job:
        query += f" and tags.`{tracking.PIPELINE_JOB_TAG}` = '{pipeline_job}'"
    parents = [
        r
        for r in client.search_runs(
            [experiment_id], query, order_by=["attributes.start_time DESC"], max_results=5
        )
        if r.info.start_time >= since * 1000
    ]
    if not parents:
        return {}
    parent = parents[0]
    children = client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    stages = {}
    for run in children:
        stage = run.data.tags.get(tracking.STAGE_TAG, run.info.run_name)
        stages[stage] = {
            "run_id": run.info.run_id,
            "status": run.info.status,
            "metrics": dict(run.data.metrics),
            "tags": {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")},
        }
    return {
        "parent_run_id": parent.info.run_id,
        "pipeline_job": parent.data.tags.get(tracking.PIPELINE_JOB_TAG, ""),
        "status": parent.info.status,
        "tracking_uri": tracking.tracking_uri(cfg),
        "experiment_id": experiment_id,
        "stages": stages,
    }


def _set_names(metrics: dict[str, float], metric: str) -> list[str]:
    """The sets (`<set>/<metric>` keys, champion's excluded) that report `metric`, sorted."""
    return sorted(
        k.rpartition("/")[0] for k in metrics if k.endswith(f"/{metric}") and not k.startswith("champion/")
    )


def format_summary(summary: dict) -> str:
    """A plain-text report of a pipeline summary."""
    if not summary:
        return "no pipeline run found in MLflow"
    st = summary["stages"]
    m = {stage: st.get(stage, {}).get("metrics", {}) for stage in STAGES}
    lines = [f"ALIGN pipeline {summary['pipeline_job']}: {summary['status']}"]
    if "pipeline_seconds" in summary:
        lines[0] += f" in {summary['pipeline_seconds'] / 60:.1f} min"
    s = m["scrape"]
    lines.append(
        f"  scrape    pages crawled {s.get('pages_crawled', 0):.0f}, "
        f"images found {s.get('images_found', 0):.0f}, pairs scraped {s.get('pairs_written', 0):.0f}"
    )
    if "scrape" in st and "filter" not in st and summary["status"] == "FINISHED":
        lines.append("  nothing new since the last scrape: filter, train, evaluate and register skipped")
        lines.append(f"MLflow: {summary['tracking_uri']} (run {summary['parent_run_id']})")
        return "\n".join(lines)
    f = m["filter"]
    lines.append(f"  filter    pairs in {f.get('input_pairs', 0):.0f}, kept {f.get('kept_pairs', 0):.0f}")
    for reason in REASONS:
        lines.append(f"              dropped {reason:<34} {f.get('dropped.' + reason, 0):>6.0f}")
    t = m["train"]
    lines.append(
        f"  train     {t.get('train_steps', 0):.0f} steps on {t.get('num_pairs', 0):.0f} pairs, loss "
        f"{t.get('first_loss', float('nan')):.3f} -> {t.get('final_loss', float('nan')):.3f}, temperature "
        f"{t.get('final_temperature', float('nan')):.4f}"
    )
    e = m["evaluate"]
    for name in _set_names(e, "image_to_text_r1"):
        for direction in ("image_to_text", "text_to_image"):
            recalls = " / ".join(
                f"{100 * e.get(f'{name}/{direction}_r{k}', float('nan')):.1f}" for k in (1, 5, 10)
            )
            chance = e.get(f"{name}/{direction}_r1_chance")
            ratio = f" (R@1 = {e[f'{name}/{direction}_r1'] / chance:.0f}x chance)" if chance else ""
            lines.append(f"  evaluate  {name}: {direction.replace('_', ' ')} R@1/5/10 {recalls}{ratio}")
    for name in _set_names(e, "zero_shot_top1"):
        lines.append(
            f"  evaluate  {name}: zero-shot classification top-1 {100 * e[f'{name}/zero_shot_top1']:.1f}% "
            f"(chance {100 * e.get(f'{name}/zero_shot_top1_chance', float('nan')):.1f}%)"
        )
    r = st.get("register", {}).get("tags", {})
    if r:
        lines.append(
            f"  register  version {r.get('model_version', '?')}: "
            f"{'became champion' if r.get('decision') == 'promoted' else 'champion kept'}"
        )
        champion = st["register"]["metrics"].get("champion_score")
        if champion is not None:
            challenger = st["register"]["metrics"].get("challenger_score", float("nan"))
            lines.append(
                f"            score {challenger:.4f} against the champion's {champion:.4f}, same sets"
            )
    x = st.get("index", {})
    if x:
        i = x["metrics"]
        lines.append(
            f"  index     {i.get('items', 0):.0f} images, {i.get('texts', 0):.0f} alt-texts "
            f"({i.get('images_embedded', 0):.0f} images newly embedded) "
            f"by {x['tags'].get('index_model_uri', '?')}"
        )
        lines.append(f"            {x['tags'].get('index_uri', '?')}")
    lines.append(f"MLflow: {summary['tracking_uri']} (run {summary['parent_run_id']}); `mlflow ui` to browse")
    tags = x.get("tags", {})
    if "index_model_uri" in tags and "index_uri" in tags:
        lines.append(
            f"Search it: {_alignpipe_command()} serve --model {tags['index_model_uri']} "
            f"--index {tags['index_uri']} --tracking-uri {summary['tracking_uri']}"
            "   (then open http://127.0.0.1:8080/)"
        )
    return "\n".join(lines)


def _alignpipe_command() -> str:
    """How this shell reaches the CLI that runs now (`.venv/bin/alignpipe` after `make run`)."""
    program = sys.argv[0] if sys.argv else ""
    if os.path.basename(program) != "alignpipe":
        return "alignpipe"
    relative = os.path.relpath(program)
    return relative if not relative.startswith("..") else program
