"""Model registration with champion/challenger promotion in the MLflow registry."""

from __future__ import annotations

import importlib.metadata
import logging
import os

import mlflow
import mlflow.artifacts
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, DataType, Schema, TensorSpec

from alignpipe import fs
from alignpipe.config import Config
from alignpipe.errors import InputError
from alignpipe.model.encoder import CONFIG_FILE
from alignpipe.promotion import challenger_wins, chance_level, clears_chance, promotion_score
from components.vertex_registry import mlflow_tags, upload_model_version

# The pyfunc's code (MLflow "models from code"): it runs where the model is loaded, without
# this project, on the distributions it imports alone (mlflow adds itself).
MODEL_CODE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mlflow_model.py")
MODEL_DISTRIBUTIONS = ("numpy", "tensorflow", "tensorflow-text")

log = logging.getLogger("alignpipe")

SCORE_TAG = "alignpipe.score"


def register_model(
    cfg: Config, model_dir: str, eval_metrics: dict[str, float], champion: dict | None = None
) -> dict:
    """Logs `model_dir` as a new registered version, then decides on the champion alias.

    Runs inside an active MLflow run (the register stage's). The challenger's score and the
    champion's come from the same evaluation run (`champion`, written by `evaluate_champion`),
    never from an earlier run's tags: the alias moves only if `challenger_wins` by
    `register.margin`, and never for a score that is not above `register.min_chance_ratio`
    times the metric's chance level, whatever the champion's. A champion that is not the one
    scored there (the alias moved meanwhile) keeps its place; one that could not be scored
    loses it. The decision and both scores are logged to the run and returned.

    Args:
        eval_metrics: the challenger's `<set>/<metric>` values.
        champion: `{"version", "metrics"}` of the champion as scored in the same run, or None
            if there was none then.

    Raises:
        InputError: `eval_metrics` lacks the configured promotion metric.
    """
    reg = cfg.register
    score = promotion_score(eval_metrics, reg.metric)
    if score is None:
        raise InputError(
            f"register.metric {reg.metric!r} is not among the evaluation metrics {sorted(eval_metrics)}"
        )
    client = MlflowClient()
    current = _champion_version(client, reg.model_name, reg.champion_alias)
    scored = str(champion["version"]) if champion else None
    champion_score = promotion_score(champion["metrics"], reg.metric) if champion else None
    chance = chance_level(eval_metrics, reg.metric) if reg.higher_is_better else None
    if not clears_chance(score, chance, reg.min_chance_ratio):
        promoted = False
        reason = (
            f"{reg.metric} {score:.4f} is not above {reg.min_chance_ratio:g}x its chance level "
            f"{chance:.4f} (register.min_chance_ratio)"
        )
    elif current is None:
        promoted, reason = True, "first model"
    elif current != scored:
        promoted = False
        reason = (
            f"the champion is version {current}, but the evaluation scored "
            f"{'version ' + scored if scored else 'no champion'}; rerun evaluate to compare them"
        )
    elif champion_score is None:
        promoted, reason = True, f"the champion (version {current}) has no {reg.metric} on these sets"
    else:
        promoted = challenger_wins(score, champion_score, reg.higher_is_better, reg.margin)
        reason = f"{score:.4f} vs {champion_score:.4f}, margin {reg.margin:g}"

    info = mlflow.pyfunc.log_model(
        name="model",
        python_model=MODEL_CODE,
        artifacts={"model_dir": model_dir},
        pip_requirements=model_pip_requirements(),
        signature=model_signature(model_dir),
        registered_model_name=reg.model_name,
    )
    version = str(info.registered_model_version)
    client.set_model_version_tag(reg.model_name, version, SCORE_TAG, str(score))
    client.set_model_version_tag(reg.model_name, version, "alignpipe.metric", reg.metric)
    # Before MLflow's alias moves: a failed upload leaves the champion as it was for a retry.
    vertex = None
    if reg.vertex_model_registry:
        vertex = upload_model_version(cfg, model_dir, version, promoted, reason)
    if promoted:
        client.set_registered_model_alias(reg.model_name, reg.champion_alias, version)
    decision = {
        "model_name": reg.model_name,
        "version": version,
        "metric": reg.metric,
        "margin": reg.margin,
        "chance_level": chance,
        "challenger_score": score,
        "champion_score": champion_score,
        "champion_version": current,
        "promoted": promoted,
        "reason": reason,
    }
    if vertex:
        decision["vertex_model"] = vertex
        mlflow.set_tags(mlflow_tags(vertex))
    mlflow.log_metric("challenger_score", score)
    if champion_score is not None:
        mlflow.log_metric("champion_score", champion_score)
    mlflow.set_tags({"decision": "promoted" if promoted else "kept_champion", "model_version": version})
    mlflow.log_dict(decision, "registration.json")
    log.info(
        "registered %s version %s (%s=%.4f); champion %s (%s)",
        reg.model_name,
        version,
        reg.metric,
        score,
        f"is now version {version}" if promoted else f"stays version {current}",
        reason,
    )
    return decision


def model_pip_requirements() -> list[str]:
    """`MODEL_DISTRIBUTIONS` pinned at the versions installed here, where the model was exported
    and evaluated (pyproject.toml's pins in the project's images): the model is served on them."""
    return [f"{name}=={importlib.metadata.version(name)}" for name in MODEL_DISTRIBUTIONS]


def champion_model_dir(cfg: Config, dst: str) -> tuple[str, str] | None:
    """(version, local model folder) of the registered champion, downloaded into `dst`; None
    when the model has no champion yet."""
    client = MlflowClient()
    version = _champion_version(client, cfg.register.model_name, cfg.register.champion_alias)
    if version is None:
        return None
    root = mlflow.artifacts.download_artifacts(
        artifact_uri=f"models:/{cfg.register.model_name}/{version}", dst_path=dst
    )
    for folder, _, files in os.walk(root):
        if CONFIG_FILE in files:
            return version, folder
    raise InputError(f"champion version {version} of {cfg.register.model_name!r} holds no {CONFIG_FILE}")


def _champion_version(client: MlflowClient, name: str, alias: str) -> str | None:
    """The version holding `alias`, or None."""
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def model_signature(model_dir: str) -> ModelSignature:
    """One of `text` (strings) or `image` (encoded bytes) in; `[N, embed_dim]` float32 out."""
    embed_dim = Config.from_json(fs.read_text(fs.join(model_dir, CONFIG_FILE))).model.embed_dim
    inputs = Schema(
        [ColSpec(DataType.string, "text", required=False), ColSpec(DataType.binary, "image", required=False)]
    )
    return ModelSignature(inputs=inputs, outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, embed_dim))]))
