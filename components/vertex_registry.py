"""Each registered model version, uploaded to the Vertex AI Model Registry as well as MLflow's.

With `register.vertex_model_registry` (the `vertex` preset), `register_model` uploads the
model's SavedModel (`<model_dir>/saved_model`) once MLflow has given it a version number. All
uploads are versions of one Vertex AI model, the one named `register.model_name` (the first
upload creates it); each carries the alias `mlflow-v<N>` and the label `mlflow_version=N`
naming its MLflow version. A promoted version also gets the champion alias
(`register.champion_alias`, in Vertex AI's alias form) and becomes the model's default
version: Vertex AI takes an alias given to a new version away from the version that held it,
so both move with MLflow's champion in the same upload. A kept champion's upload gets neither.

Vertex AI reads models from Cloud Storage only: the model folder is a `gs://` URI or, inside a
Vertex AI task, its Cloud Storage FUSE path `/gcs/BUCKET/...`.

Each version names the project's serving image (`register.serving_image`, `alignpipe serve`)
with the port and routes it answers on: a deployment copies the SavedModel to
`AIP_STORAGE_URI` and sends `{"instances": [...]}` to the predict route
(`alignpipe.serving.search_service.SearchService.predict`).
"""

from __future__ import annotations

import logging
import re

from alignpipe.config import Config
from alignpipe.config.validation import is_registry_image
from alignpipe.errors import ConfigError, InputError
from alignpipe.model.export import SAVED_MODEL_DIR
from alignpipe.serving import DEFAULT_PORT, HEALTH_ROUTE, PREDICT_ROUTE

log = logging.getLogger("alignpipe")

# Vertex AI's version alias form (the Model resource's `version_aliases`), lowercase only as
# its console documents it.
ALIAS_PATTERN = re.compile(r"[a-z][a-z0-9-]{0,126}[a-z0-9]")
DEFAULT_ALIAS = "default"  # the version a request without a version gets; Vertex AI's own alias
FUSE_PREFIX = "/gcs/"  # where Vertex AI mounts Cloud Storage in pipeline tasks and custom jobs


def gcs_uri(path: str) -> str:
    """`path` as a `gs://` URI: `/gcs/BUCKET/x` (a Vertex AI task's FUSE mount) becomes
    `gs://BUCKET/x`; a `gs://` URI stays as it is (less a trailing slash).

    Raises:
        InputError: `path` is not in Cloud Storage.
    """
    uri = "gs://" + path.removeprefix(FUSE_PREFIX) if path.startswith(FUSE_PREFIX) else path
    if not re.fullmatch(r"gs://[^/]+(/.*)?", uri):
        raise InputError(
            f"the Vertex AI Model Registry needs the model in Cloud Storage (gs://BUCKET/... or "
            f"{FUSE_PREFIX}BUCKET/... in a Vertex AI task), but it is at {path!r}: run the pipeline "
            "on Vertex AI, or set register.vertex_model_registry=false"
        )
    return uri.rstrip("/")


def vertex_alias(name: str) -> str:
    """`name` in Vertex AI's version alias form: lowercase, runs of other characters as one
    `-`, starting with a letter (`Champion_2024` -> `champion-2024`).

    Raises:
        ConfigError: nothing of `name` makes an alias.
    """
    alias = re.sub(r"[^a-z0-9]+", "-", name.lower()).lstrip("0123456789-")[:128].rstrip("-")
    if not ALIAS_PATTERN.fullmatch(alias):
        raise ConfigError(
            f"register.champion_alias={name!r} is not allowed: must make a Vertex AI version alias "
            f"(two or more letters, digits and dashes, starting with a letter: {ALIAS_PATTERN.pattern})"
        )
    return alias


def version_aliases(cfg: Config, mlflow_version: str, promoted: bool) -> list[str]:
    """The aliases of the uploaded version: `mlflow-v<N>`, and if promoted, the champion alias
    and `default`."""
    aliases = [f"mlflow-v{mlflow_version}"]
    if promoted:
        aliases += [a for a in (vertex_alias(cfg.register.champion_alias), DEFAULT_ALIAS) if a not in aliases]
    return aliases


def upload_model_version(
    cfg: Config, model_dir: str, mlflow_version: str, promoted: bool, reason: str = ""
) -> dict[str, object]:
    """Uploads `model_dir`'s SavedModel as a new version of the Vertex AI model
    `register.model_name` in `runner.gcp_project` / `gcp_region` (a new model if there is none).

    Args:
        model_dir: the model folder, `gs://...` or `/gcs/BUCKET/...`.
        mlflow_version: the MLflow registry's version of the same model.
        promoted: it is the new champion: the champion and default aliases move to it.
        reason: why it was promoted or not, for the version's description.

    Returns:
        `{"resource_name", "version_id", "version_name" (resource_name@version_id), "aliases",
        "artifact_uri", "parent_model" (the model it became a version of, or None)}`.

    Raises:
        InputError: `model_dir` is not in Cloud Storage, or there are no Google Cloud credentials.
        ConfigError: no `runner.gcp_project`, `register.champion_alias` makes no Vertex alias,
            or `register.serving_image` is not in a registry Vertex AI pulls from.
    """
    import google.auth.exceptions
    from google.cloud import aiplatform

    reg, runner = cfg.register, cfg.runner
    if not runner.gcp_project:
        raise ConfigError(
            "runner.gcp_project='' is not allowed: must be the Google Cloud project of the "
            "Vertex AI Model Registry (register.vertex_model_registry is on)"
        )
    if not is_registry_image(reg.serving_image):
        raise ConfigError(
            f"register.serving_image={reg.serving_image!r} is not allowed: must be the serving image "
            "in Artifact Registry that Vertex AI deploys, REGION-docker.pkg.dev/PROJECT/REPO/"
            "alignpipe-serving:TAG (cloudbuild.yaml pushes it)"
        )
    artifact_uri = f"{gcs_uri(model_dir)}/{SAVED_MODEL_DIR}"
    aliases = version_aliases(cfg, mlflow_version, promoted)
    where = {"project": runner.gcp_project, "location": runner.gcp_region}
    try:
        parent = _existing_model(reg.model_name, **where)
        model = aiplatform.Model.upload(
            display_name=reg.model_name,
            artifact_uri=artifact_uri,
            serving_container_image_uri=reg.serving_image,
            serving_container_predict_route=PREDICT_ROUTE,
            serving_container_health_route=HEALTH_ROUTE,
            serving_container_ports=[DEFAULT_PORT],
            parent_model=parent,
            is_default_version=promoted,
            version_aliases=list(aliases),  # a copy: the SDK appends "default" to the list it gets
            version_description=_description(mlflow_version, promoted, reason),
            labels={"mlflow_version": mlflow_version},
            **where,
        )
    except google.auth.exceptions.DefaultCredentialsError as e:
        raise InputError(
            f"no Google Cloud credentials for the Vertex AI Model Registry ({e}); "
            "run `gcloud auth application-default login`"
        ) from None
    uploaded = {
        "resource_name": model.resource_name,
        "version_id": str(model.version_id),
        "version_name": model.versioned_resource_name,
        "aliases": list(model.version_aliases),
        "artifact_uri": artifact_uri,
        "parent_model": parent,
    }
    log.info(
        "uploaded %s to the Vertex AI Model Registry: %s (aliases %s)",
        artifact_uri,
        uploaded["version_name"],
        ", ".join(uploaded["aliases"]),
    )
    return uploaded


def mlflow_tags(uploaded: dict[str, object]) -> dict[str, str]:
    """`upload_model_version`'s result as MLflow run tags (`vertex_model...`)."""
    return {
        "vertex_model": str(uploaded["resource_name"]),
        "vertex_model_version": str(uploaded["version_id"]),
        "vertex_model_aliases": ",".join(uploaded["aliases"]),
    }


def _description(mlflow_version: str, promoted: bool, reason: str) -> str:
    decision = "the new champion" if promoted else "the champion stays"
    return f"MLflow version {mlflow_version}; {decision}" + (f": {reason}" if reason else "")


def _existing_model(display_name: str, project: str, location: str) -> str | None:
    """The resource name of the Vertex AI model called `display_name` (the first created if
    several are), or None."""
    from google.cloud import aiplatform

    quoted = display_name.replace("\\", "\\\\").replace('"', '\\"')
    found = aiplatform.Model.list(
        filter=f'display_name="{quoted}"', order_by="create_time", project=project, location=location
    )
    if len(found) > 1:
        log.warning(
            "%d Vertex AI models are called %r; adding a version to the first created, %s",
            len(found),
            display_name,
            found[0].resource_name,
        )
    return found[0].resource_name if found else None
