"""Validation at load time.

A bad value fails with one line naming the key, the value and what is allowed.
"""

from __future__ import annotations

import re
import typing

from alignpipe.errors import ConfigError

if typing.TYPE_CHECKING:
    from alignpipe.config.schema import Config

OUTPUT_FORMATS = ("tfrecord", "webdataset", "parquet")

_CHOICES: dict[str, tuple[str, ...]] = {
    "scrape.source": ("crawl", "url_list", "warc"),
    "scrape.image_hosts": ("any", "allowed"),
    "scrape.resize_mode": ("no", "keep_ratio", "center_crop"),
    "model.image_encoder": ("efficientnet_scaled", "efficientnetv2_scaled")
    + tuple(f"efficientnet_b{i}" for i in range(8)),
    "train.optimizer": ("lamb", "adamw"),
    "runner.train_scheduling": ("STANDARD", "SPOT", "FLEX_START"),
    "train.backend": ("tensorflow", "jax"),
    "train.strategy": ("default", "mirrored", "tpu"),
    "train.precision": ("auto", "float32", "mixed_bfloat16"),
}


def validate(cfg: Config) -> Config:
    """Checks ranges and choices; returns `cfg` unchanged or raises `ConfigError`."""
    flat = cfg.flat()
    for key, choices in _CHOICES.items():
        if flat[key] not in choices:
            raise ConfigError(f"{key}={flat[key]!r} is not allowed; choose one of {list(choices)}")
    positive = [k for k, v in flat.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    non_negative = {
        "train.warmup_steps",
        "train.seed",
        "model.image_dropout",
        "filter.eval_duplicate_max_hamming",
        "filter.unsafe_image_max_hamming",
        "filter.rare_token_min_word_share",
        "train.temperature_lr_multiplier",
        "register.margin",
        "runner.task_retries",
        "runner.train_step_seconds",
        "train.weight_decay",
        "train.label_smoothing",
        "scrape.min_host_delay_s",
        "scrape.retries",
        "scrape.retry_backoff_s",
        "scrape.max_retry_after_s",
        "scrape.max_redirects",
        "scrape.processes",
    }
    for key in positive:
        value = flat[key]
        if value < 0 or (value == 0 and key not in non_negative):
            raise ConfigError(f"{key}={value!r} must be {'>= 0' if key in non_negative else '> 0'}")
    _check(cfg.model.image_dropout < 1, "model.image_dropout", cfg.model.image_dropout, "< 1")
    _check(
        cfg.register.min_chance_ratio >= 1,
        "register.min_chance_ratio",
        cfg.register.min_chance_ratio,
        ">= 1 (times the promotion metric's chance level)",
    )
    _check(cfg.filter.max_aspect_ratio > 1, "filter.max_aspect_ratio", cfg.filter.max_aspect_ratio, "> 1")
    _check(
        cfg.filter.rare_token_min_word_share <= 1,
        "filter.rare_token_min_word_share",
        cfg.filter.rare_token_min_word_share,
        "<= 1 (occurrences per alt-text; e.g. 1e-7 = once per 10 million alt-texts)",
    )
    _check(
        cfg.filter.nsfw_image_threshold <= 1,
        "filter.nsfw_image_threshold",
        cfg.filter.nsfw_image_threshold,
        "<= 1 (scores are probabilities; the image_nsfw rule drops a score >= the threshold)",
    )
    _check(
        not cfg.filter.nsfw_image_scorer or _is_callable_spec(cfg.filter.nsfw_image_scorer),
        "filter.nsfw_image_scorer",
        cfg.filter.nsfw_image_scorer,
        'empty (off) or "package.module:callable", e.g. "my_safety.clip_nsfw:score"',
    )
    _check(
        cfg.filter.max_stats_drift <= 1,
        "filter.max_stats_drift",
        cfg.filter.max_stats_drift,
        "<= 1 (a total-variation distance or relative change; 0.2 = a fifth of the mass moved)",
    )
    _check(
        cfg.filter.min_alt_words <= cfg.filter.max_alt_words,
        "filter.min_alt_words",
        cfg.filter.min_alt_words,
        f"<= filter.max_alt_words ({cfg.filter.max_alt_words})",
    )
    _check(cfg.train.label_smoothing < 1, "train.label_smoothing", cfg.train.label_smoothing, "< 1")
    _check(
        cfg.model.image_resize >= cfg.model.image_size,
        "model.image_resize",
        cfg.model.image_resize,
        f">= model.image_size ({cfg.model.image_size})",
    )
    _check(
        cfg.model.text_hidden_dim % cfg.model.text_heads == 0,
        "model.text_hidden_dim",
        cfg.model.text_hidden_dim,
        f"a multiple of model.text_heads ({cfg.model.text_heads})",
    )
    for url in cfg.scrape.seed_urls:
        _check(url.startswith(("http://", "https://")), "scrape.seed_urls", url, "an http(s) URL")
    for network in cfg.scrape.allowed_networks:
        _check(_is_cidr(network), "scrape.allowed_networks", network, "a CIDR such as 127.0.0.1/32")
    for fmt in cfg.scrape.output_formats:
        _check(fmt in OUTPUT_FORMATS, "scrape.output_formats", fmt, f"one of {list(OUTPUT_FORMATS)}")
    _check(
        "tfrecord" in cfg.scrape.output_formats,
        "scrape.output_formats",
        cfg.scrape.output_formats,
        "a list that includes tfrecord (the later stages read it)",
    )
    _check(cfg.scrape.jpeg_quality <= 100, "scrape.jpeg_quality", cfg.scrape.jpeg_quality, "<= 100")
    _check(
        not cfg.scrape.corpus_dir or bool(cfg.scrape.state_dir),
        "scrape.corpus_dir",
        cfg.scrape.corpus_dir,
        "set only with scrape.state_dir (a corpus of full scrapes would hold every pair once per run)",
    )
    _check(
        cfg.env == "local" or cfg.tracking.tracking_uri.startswith(("http://", "https://")),
        "tracking.tracking_uri",
        cfg.tracking.tracking_uri,
        f"the http(s) URI of the shared MLflow server in the {cfg.env!r} environment (its tasks run on "
        "separate machines, so a local store would split the run)",
    )
    _check(
        cfg.tracking.auth in ("", "google_id_token") or cfg.tracking.auth.startswith("secret:projects/"),
        "tracking.auth",
        cfg.tracking.auth,
        "'', 'google_id_token' or 'secret:projects/P/secrets/S/versions/V'",
    )
    _check(
        not (cfg.tracking.auth.startswith("secret:") and is_cloud_run_url(cfg.tracking.tracking_uri)),
        "tracking.auth",
        cfg.tracking.auth,
        f"'google_id_token' for the Cloud Run server {cfg.tracking.tracking_uri} (Cloud Run's IAM takes "
        "only Google-signed ID tokens; a static token from Secret Manager is refused with 403)",
    )
    if cfg.runner.train_in_custom_job:
        from alignpipe.config.footprint import check_slice

        check_slice(cfg)
    if cfg.env == "vertex":
        _check_vertex_target(cfg)
    for template in cfg.eval.prompt_templates:
        _check("{}" in template, "eval.prompt_templates", template, "a template containing {}")
    names: list[str] = []
    for key in ("eval.retrieval_sets", "eval.classification_sets"):
        for item in flat[key]:
            names.append(named_path(item)[0])
            _check(
                _SET_NAME.fullmatch(names[-1]) is not None,
                key,
                item,
                "name=path with a name of letters, digits, '_', '-' or '.' (it prefixes the set's metrics)",
            )
            _check(names.count(names[-1]) == 1, key, item, f"a set whose name {names[-1]!r} no other set has")
    return cfg


_SET_NAME = re.compile(r"[A-Za-z0-9_.-]+")

# An image Vertex AI and Dataflow pull with the pipeline's service account: Artifact Registry
# (REGION-docker.pkg.dev/PROJECT/REPO/NAME, or a multi-region such as us-docker.pkg.dev) or
# Container Registry's hosts (gcr.io/PROJECT/NAME, also served by Artifact Registry's gcr.io
# repositories), with a tag in Docker's tag grammar or a sha256 digest. A bare name such as
# `alignpipe-data:latest` would be looked up on Docker Hub, where the project's images are not.
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REGISTRY_IMAGE = re.compile(
    rf"(?:[a-z0-9]+(?:-[a-z0-9]+)*-docker\.pkg\.dev/{_PATH_PART}(?::{_PATH_PART})?/{_PATH_PART}"
    rf"|(?:(?:us|eu|asia)\.)?gcr\.io/{_PATH_PART}(?::{_PATH_PART})?)"
    rf"(?:/{_PATH_PART})+"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[0-9a-f]{64})?"
)


def is_registry_image(name: str) -> bool:
    """Whether `name` is an image in Artifact Registry or Container Registry (see `_REGISTRY_IMAGE`).

    Example:
        >>> is_registry_image("us-central1-docker.pkg.dev/proj/repo/alignpipe-data:v1")
        True
        >>> is_registry_image("alignpipe-data:latest")
        False
    """
    return _REGISTRY_IMAGE.fullmatch(name) is not None


def vertex_images(cfg: Config) -> dict[str, str]:
    """The images a Vertex AI run of `cfg` pulls, by config key: the data and trainer images
    (kfp tasks), the custom job's image when it is of another kind (TPU, GPU), and the serving
    image each Model Registry upload names (`register.vertex_model_registry`)."""
    from alignpipe.config.accelerators import slice_of

    r = cfg.runner
    images = {"runner.data_image": r.data_image, "runner.trainer_image": r.trainer_image}
    kind = slice_of(r.accelerator, r.accelerator_chips).spec.kind
    if kind != "cpu":
        images[f"runner.trainer_{kind}_image"] = getattr(r, f"trainer_{kind}_image")
    if cfg.register.vertex_model_registry:
        images["register.serving_image"] = cfg.register.serving_image
    return images


def check_vertex_images(cfg: Config) -> None:
    """Raises `ConfigError` naming the first image of `vertex_images(cfg)` that is not in a registry."""
    for key, image in vertex_images(cfg).items():
        _check(
            is_registry_image(image),
            key,
            image,
            "a registry-qualified image, REGION-docker.pkg.dev/PROJECT/REPO/NAME[:TAG|@sha256:DIGEST] "
            "(or gcr.io/PROJECT/NAME[:TAG])",
        )


def _check_vertex_target(cfg: Config) -> None:
    """Where a Vertex AI run happens: a project, a gs:// pipeline root and an https MLflow server
    (Cloud Run serves https only). The images are the template's (`check_vertex_images`)."""
    r = cfg.runner
    _check(
        cfg.tracking.tracking_uri.startswith("https://"),
        "tracking.tracking_uri",
        cfg.tracking.tracking_uri,
        "the https URI of the shared MLflow server on Vertex AI (e.g. its Cloud Run URL)",
    )
    _check(bool(r.gcp_project), "runner.gcp_project", r.gcp_project, "the Google Cloud project the run uses")
    _check(
        r.pipeline_root.startswith("gs://") and len(r.pipeline_root.rstrip("/")) > len("gs://"),
        "runner.pipeline_root",
        r.pipeline_root,
        "a gs://BUCKET/PATH folder (the pipeline's artifacts, Dataflow's staging, the custom jobs' outputs)",
    )


def named_path(item: str) -> tuple[str, str]:
    """`"name=path"` -> (name, path); a bare path is named after its file (without the
    extension and a `dataset_` prefix, as in Karpathy's `dataset_flickr30k.json`) or folder.

    Example:
        >>> named_path("coco=/data/coco/dataset_coco.json"), named_path("/data/dataset_flickr30k.json")
        (('coco', '/data/coco/dataset_coco.json'), ('flickr30k', '/data/dataset_flickr30k.json'))
    """
    name, sep, path = item.partition("=")
    if sep and "/" not in name and ":" not in name:
        return name.strip(), path.strip()
    stem = item.rstrip("/").rsplit("/", 1)[-1]
    stem = stem.rsplit(".", 1)[0] if "." in stem else stem
    return stem.removeprefix("dataset_"), item


_CALLABLE_SPEC = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def _is_callable_spec(text: str) -> bool:
    return _CALLABLE_SPEC.fullmatch(text) is not None


def is_cloud_run_url(uri: str) -> bool:
    """Whether `uri` is a Cloud Run service's own URL (`https://NAME-HASH-REGION.a.run.app`, or
    `https://NAME-PROJECT_NUMBER.REGION.run.app`)."""
    import urllib.parse

    host = urllib.parse.urlsplit(uri).hostname or ""
    return host.endswith(".run.app")


def _is_cidr(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


def _check(ok: bool, key: str, value: object, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is not allowed: must be {allowed}")
