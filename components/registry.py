"""Model registration with champion/challenger promotion in the MLflow registry."""

from __future__ import annotations

import logging
import os

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, DataType, Schema, TensorSpec

from alignpipe import fs
from alignpipe.config import Config
from alignpipe.errors import InputError
from alignpipe.model.encoder import CONFIG_FILE
from alignpipe.promotion import challenger_wins

# The pyfunc's code (MLflow "models from code"): it runs where the model is loaded, without
# this project, on these packages alone (mlflow adds itself).
MODEL_CODE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mlflow_model.py")
PIP_REQUIREMENTS = ["tensorflow==2.21.0", "tensorflow-text==2.21.1"]

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
        python_model=MODEL_CODE,
        artifacts={"model_dir": model_dir},
        pip_requirements=PIP_REQUIREMENTS,
        signature=model_signature(model_dir),
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


def model_signature(model_dir: str) -> ModelSignature:
    """One of `text` (strings) or `image` (encoded bytes) in; `[N, embed_dim]` float32 out."""
    embed_dim = Config.from_json(fs.read_text(fs.join(model_dir, CONFIG_FILE))).model.embed_dim
    inputs = Schema(
        [ColSpec(DataType.string, "text", required=False), ColSpec(DataType.binary, "image", required=False)]
    )
    return ModelSignature(inputs=inputs, outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, embed_dim))]))
