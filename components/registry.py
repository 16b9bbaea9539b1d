"""Model registration with champion/challenger promotion in the MLflow registry."""

from __future__ import annotations

import logging

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from alignpipe.config import Config
from alignpipe.errors import InputError
from alignpipe.promotion import challenger_wins
from components.mlflow_model import PIP_REQUIREMENTS, AlignPyfuncModel

log = logging.getLogger("alignpipe")

SCORE_TAG = "alignpipe.score"


def register_model(cfg: Config, model_dir: str, eval_metrics: dict[str, float]) -> dict:
    """Logs `model_dir` as a new registered version, then decides on the champion alias.

    Runs inside an active MLflow run (the register stage's). The new version
    carries its score as a tag; the alias moves to it only if
    `alignpipe.promotion.challenger_wins` says so. The decision and both scores
    are logged to the run and returned.

    Raises:
        InputError: `eval_metrics` lacks the configured promotion metric.
    """
    reg = cfg.register
    if reg.metric not in eval_metrics:
        raise InputError(
            f"register.metric {reg.metric!r} is not among the evaluation metrics {sorted(eval_metrics)}"
        )
    score = float(eval_metrics[reg.metric])
    client = MlflowClient()
    champion_version, champion_score = _champion(client, reg.model_name, reg.champion_alias)

    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=AlignPyfuncModel(),
        artifacts={"model_dir": model_dir},
        pip_requirements=PIP_REQUIREMENTS,
        registered_model_name=reg.model_name,
    )
    version = str(info.registered_model_version)
    client.set_model_version_tag(reg.model_name, version, SCORE_TAG, str(score))
    client.set_model_version_tag(reg.model_name, version, "alignpipe.metric", reg.metric)
    promoted = challenger_wins(score, champion_score, reg.higher_is_better)
    if promoted:
        client.set_registered_model_alias(reg.model_name, reg.champion_alias, version)
    decision = {
        "model_name": reg.model_name,
        "version": version,
        "metric": reg.metric,
        "challenger_score": score,
        "champion_score": champion_score,
        "champion_version": champion_version,
        "promoted": promoted,
    }
    mlflow.log_metric("challenger_score", score)
    if champion_score is not None:
        mlflow.log_metric("champion_score", champion_score)
    mlflow.set_tags({"decision": "promoted" if promoted else "kept_champion", "model_version": version})
    mlflow.log_dict(decision, "registration.json")
    log.info(
        "registered %s version %s (%s=%.4f); champion %s",
        reg.model_name,
        version,
        reg.metric,
        score,
        f"is now version {version}"
        if promoted
        else f"stays version {champion_version} ({champion_score:.4f})",
    )
    return decision


def _champion(client: MlflowClient, name: str, alias: str) -> tuple[str | None, float | None]:
    """(version, score) of the model holding `alias`, or (None, None)."""
    try:
        version = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None, None
    score = version.tags.get(SCORE_TAG)
    return version.version, float(score) if score is not None else None
