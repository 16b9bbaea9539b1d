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
    if cfg.runner.train_in_custom_job:
        from alignpipe.config.footprint import check_slice

        check_slice(cfg)
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
