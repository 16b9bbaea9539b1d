"""One typed configuration for the whole pipeline.

A `Config` is merged, in order, from the dataclass defaults (the paper's recipe,
see ../ALIGN.md facts cited per field), an environment preset (where it runs), an
experiment preset (how big it is) and explicit `key=value` overrides. It is
validated once at load time and travels as JSON, unchanged, to every component
and to the trainer.

Example:
    >>> cfg = load_config("local", "tiny", ["train.steps=10"])
    >>> cfg.train.steps
    10
    >>> Config.from_json(cfg.to_json()) == cfg
    True
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field

from alignpipe.errors import ConfigError


@dataclass(frozen=True)
class RunnerConfig:
    """Where the pipeline runs: engines are options, never code paths."""

    beam_args: tuple[str, ...] = ("--runner=DirectRunner",)
    data_image: str = "alignpipe-data:latest"  # kfp base image of data steps; Beam SDK based
    trainer_image: str = "alignpipe-trainer:latest"  # kfp base image of train / evaluate
    work_dir: str = "alignpipe-work"  # local runs: demo web, kfp root, MLflow store


@dataclass(frozen=True)
class ScrapeConfig:
    """Crawling web pages and downloading (image, alt-text) pairs."""

    seed_urls: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()  # empty: the hosts of the seed URLs
    max_pages: int = 100_000
    max_depth: int = 20
    user_agent: str = "alignpipe-bot/0.1 (+https://github.com/alignpipe/alignpipe)"
    request_timeout_s: float = 10.0
    max_image_bytes: int = 20_000_000
    max_page_bytes: int = 5_000_000
    download_threads: int = 16
    num_shards: int = 16


@dataclass(frozen=True)
class FilterConfig:
    """ALIGN's frequency-based filters (paper section 3); defaults are the paper's."""

    min_image_short_side: int = 200  # keep when the shorter side is > this
    max_aspect_ratio: float = 3.0  # keep when long side / short side < this
    max_alts_per_image: int = 1000  # drop images with more distinct alt-texts
    max_images_per_alt: int = 10  # drop alt-texts shared by more images
    rare_token_vocab_size: int = 100_000_000  # top-K unigrams + bigrams
    min_alt_words: int = 3
    max_alt_words: int = 20
    eval_duplicate_max_hamming: int = 6  # pHash bits; COYO-700M's approach
    unsafe_image_blocklist: str = ""  # file of pHashes of pornographic images
    unsafe_image_max_hamming: int = 6  # pHash bits to a blocklisted image
    num_shards: int = 16


@dataclass(frozen=True)
class ModelConfig:
    """The dual encoder: EfficientNet image tower, BERT text tower."""

    image_encoder: str = "efficientnet_b7"  # efficientnet_b0..b7 or efficientnet_scaled
    image_width_coefficient: float = 1.0  # efficientnet_scaled only
    image_depth_coefficient: float = 1.0  # efficientnet_scaled only
    image_size: int = 289  # train crop / eval center crop
    image_resize: int = 346  # resize before the crop
    text_layers: int = 12  # BERT-Base; the headline model uses BERT-Large
    text_hidden_dim: int = 768
    text_heads: int = 12
    text_intermediate_dim: int = 3072
    max_text_tokens: int = 64
    vocab_size: int = 100_000
    embed_dim: int = 640


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation (paper section 4.2 / ALIGN.md 'Optimisation')."""

    batch_size: int = 16_384  # global batch; negatives come from all replicas
    steps: int = 1_200_000
    warmup_steps: int = 10_000
    learning_rate: float = 1e-3
    optimizer: str = "lamb"  # lamb | adamw
    weight_decay: float = 1e-5
    temperature_init: float = 1.0
    temperature_lr_multiplier: float = 1.0
    label_smoothing: float = 0.1
    random_flip: bool = True
    strategy: str = "default"  # default | mirrored | tpu
    shuffle_buffer: int = 10_000
    log_every_steps: int = 100
    seed: int = 0


@dataclass(frozen=True)
class EvalConfig:
    """Zero-shot retrieval and classification."""

    retrieval_set: str = ""  # Karpathy-format JSON; images beside it
    retrieval_split: str = "test"
    classification_set: str = ""  # folder of class folders + classnames.txt
    prompt_templates: tuple[str, ...] = ("a photo of a {}.",)
    recall_ks: tuple[int, ...] = (1, 5, 10)
    batch_size: int = 256


@dataclass(frozen=True)
class RegisterConfig:
    """Champion/challenger promotion in the model registry."""

    model_name: str = "align-dual-encoder"
    champion_alias: str = "champion"
    metric: str = "image_to_text_r1"
    higher_is_better: bool = True


@dataclass(frozen=True)
class TrackingConfig:
    """MLflow tracking; a relative sqlite path lives in runner.work_dir."""

    tracking_uri: str = ""  # empty: sqlite:///<work_dir>/mlflow.db
    experiment: str = "alignpipe"


@dataclass(frozen=True)
class Config:
    """The whole pipeline's configuration."""

    env: str = "local"
    experiment: str = "paper"
    runner: RunnerConfig = field(default_factory=RunnerConfig)
    scrape: ScrapeConfig = field(default_factory=ScrapeConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    register: RegisterConfig = field(default_factory=RegisterConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Config:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"config JSON is malformed: {e}") from None
        return validate(_build(cls, raw, prefix=""))

    def flat(self) -> dict[str, object]:
        """`{"train.steps": 10, ...}`: every leaf key, as logged to MLflow params."""
        out: dict[str, object] = {}
        for section in dataclasses.fields(self):
            value = getattr(self, section.name)
            if dataclasses.is_dataclass(value):
                for f in dataclasses.fields(value):
                    out[f"{section.name}.{f.name}"] = getattr(value, f.name)
            else:
                out[section.name] = value
        return out

    def replace(self, **dotted: object) -> Config:
        """A copy with dotted keys set to already-typed values, validated."""
        return validate(_apply(self, {k.replace("__", "."): v for k, v in dotted.items()}))


# Presets are explicit dicts of dotted keys; add a preset by adding an entry.
ENV_PRESETS: dict[str, dict[str, object]] = {
    "local": {
        "runner.beam_args": ("--runner=DirectRunner",),
        "train.strategy": "default",
    },
}

EXPERIMENT_PRESETS: dict[str, dict[str, object]] = {
    # The recipe as published: EfficientNet-B7 + BERT-Base, 640-d, batch 16k.
    "paper": {},
    # A CPU demo that learns in minutes on the generated mini-web (../README.md).
    "tiny": {
        "scrape.num_shards": 2,
        "scrape.download_threads": 8,
        "scrape.max_pages": 500,
        "filter.min_image_short_side": 32,  # 96 px scenes: 24 px icons fail, 40 px banners hit the ratio rule
        "filter.max_alts_per_image": 8,
        "filter.max_images_per_alt": 10,
        "filter.rare_token_vocab_size": 700,  # of ~1000 distinct tokens; ~600 occur more than once
        "filter.num_shards": 2,
        "model.image_encoder": "efficientnet_scaled",
        "model.image_width_coefficient": 0.5,
        "model.image_depth_coefficient": 0.25,
        "model.image_size": 64,
        "model.image_resize": 72,
        "model.text_layers": 2,
        "model.text_hidden_dim": 128,
        "model.text_heads": 8,
        "model.text_intermediate_dim": 256,
        "model.max_text_tokens": 24,
        "model.vocab_size": 1000,
        "model.embed_dim": 128,
        "train.batch_size": 128,
        "train.steps": 700,
        "train.warmup_steps": 50,
        "train.optimizer": "lamb",  # adamw at 3e-3 collapsed BERT's attention in some seeds
        "train.learning_rate": 3e-3,
        "train.weight_decay": 1e-4,
        "train.temperature_lr_multiplier": 10.0,
        "train.random_flip": False,  # captions name left/right positions
        "train.shuffle_buffer": 4096,
        "train.log_every_steps": 20,
        "eval.prompt_templates": ("a {}.", "a picture of a {}.", "an image with a {}."),
        "eval.batch_size": 128,
    },
}

_CHOICES: dict[str, tuple[str, ...]] = {
    "model.image_encoder": ("efficientnet_scaled",) + tuple(f"efficientnet_b{i}" for i in range(8)),
    "train.optimizer": ("lamb", "adamw"),
    "train.strategy": ("default", "mirrored", "tpu"),
}


def load_config(env: str = "local", experiment: str = "tiny", overrides: typing.Iterable[str] = ()) -> Config:
    """Merges defaults, the two presets and `key=value` overrides, then validates.

    Args:
        env: a key of `ENV_PRESETS`.
        experiment: a key of `EXPERIMENT_PRESETS`.
        overrides: strings like `"train.steps=100"` or `"scrape.seed_urls=http://a/,http://b/"`;
            tuples take comma-separated items, booleans take true/false.

    Raises:
        ConfigError: naming the bad preset, key or value and what is allowed.
    """
    if env not in ENV_PRESETS:
        raise ConfigError(f"unknown environment preset {env!r}; choose one of {sorted(ENV_PRESETS)}")
    if experiment not in EXPERIMENT_PRESETS:
        raise ConfigError(
            f"unknown experiment preset {experiment!r}; choose one of {sorted(EXPERIMENT_PRESETS)}"
        )
    cfg = Config(env=env, experiment=experiment)
    cfg = _apply(cfg, ENV_PRESETS[env])
    cfg = _apply(cfg, EXPERIMENT_PRESETS[experiment])
    parsed: dict[str, object] = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        parsed[key.strip()] = _parse(key.strip(), _field_type(cfg, key.strip()), text.strip())
    return validate(_apply(cfg, parsed))


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
        "filter.eval_duplicate_max_hamming",
        "filter.unsafe_image_max_hamming",
        "train.temperature_lr_multiplier",
        "train.weight_decay",
        "train.label_smoothing",
    }
    for key in positive:
        value = flat[key]
        if value < 0 or (value == 0 and key not in non_negative):
            raise ConfigError(f"{key}={value!r} must be {'>= 0' if key in non_negative else '> 0'}")
    _check(cfg.filter.max_aspect_ratio > 1, "filter.max_aspect_ratio", cfg.filter.max_aspect_ratio, "> 1")
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
    for template in cfg.eval.prompt_templates:
        _check("{}" in template, "eval.prompt_templates", template, "a template containing {}")
    return cfg


def _check(ok: bool, key: str, value: object, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is not allowed: must be {allowed}")


def _apply(cfg: Config, dotted: dict[str, object]) -> Config:
    sections: dict[str, dict[str, object]] = {}
    top: dict[str, object] = {}
    for key, value in dotted.items():
        _field_type(cfg, key)  # raises on unknown keys
        section, _, name = key.partition(".")
        if name:
            sections.setdefault(section, {})[name] = value
        else:
            top[section] = value
    for section, values in sections.items():
        top[section] = dataclasses.replace(getattr(cfg, section), **values)
    return dataclasses.replace(cfg, **top)


def _field_type(cfg: Config, key: str) -> object:
    section, _, name = key.partition(".")
    hints = typing.get_type_hints(Config)
    if section not in hints:
        raise ConfigError(f"unknown config key {key!r}; sections are {sorted(hints)}")
    section_type = hints[section]
    if not name:
        if dataclasses.is_dataclass(section_type):
            raise ConfigError(f"config key {key!r} is a section; set one of its keys, e.g. {key}.<name>")
        return section_type
    if not dataclasses.is_dataclass(section_type):
        raise ConfigError(f"unknown config key {key!r}")
    sub = typing.get_type_hints(section_type)
    if name not in sub:
        raise ConfigError(f"unknown config key {key!r}; {section} has {sorted(sub)}")
    return sub[name]


def _parse(key: str, kind: object, text: str) -> object:
    origin = typing.get_origin(kind)
    if origin is tuple:
        item_type = typing.get_args(kind)[0]
        items = [t.strip() for t in text.split(",") if t.strip()] if text else []
        return tuple(_parse(key, item_type, t) for t in items)
    try:
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return text.lower() in ("true", "1", "yes")
        if kind is int:
            return int(text.replace("_", ""))
        if kind is float:
            return float(text)
    except ValueError:
        raise ConfigError(f"{key}={text!r} is not a valid {kind.__name__}") from None
    return text


def _build(kind: type, raw: object, prefix: str) -> object:
    """Rebuilds a dataclass from `json.loads` output, checking keys and types."""
    if not isinstance(raw, dict):
        raise ConfigError(f"config {prefix or 'root'} must be a JSON object")
    hints = typing.get_type_hints(kind)
    unknown = sorted(set(raw) - set(hints))
    if unknown:
        raise ConfigError(f"unknown config key {prefix + unknown[0]!r}")
    values = {}
    for name, value in raw.items():
        hint = hints[name]
        key = prefix + name
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, value, key + ".")
        elif typing.get_origin(hint) is tuple:
            if not isinstance(value, list):
                raise ConfigError(f"{key}={value!r} must be a list")
            values[name] = tuple(_coerce(key, typing.get_args(hint)[0], v) for v in value)
        else:
            values[name] = _coerce(key, hint, value)
    return kind(**values)


def _coerce(key: str, kind: object, value: object) -> object:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):  # type: ignore[arg-type]
        name = getattr(kind, "__name__", str(kind))
        raise ConfigError(f"{key}={value!r} must be of type {name}")
    return value
