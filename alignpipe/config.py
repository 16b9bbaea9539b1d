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
import re
import typing
from dataclasses import dataclass, field

from alignpipe.errors import ConfigError

# Beam's in-process runner. `DirectRunner` would first try to download the Prism runner
# binary from the internet on every pipeline, then fall back to this one.
IN_PROCESS_RUNNER = "apache_beam.runners.portability.fn_api_runner.FnApiRunner"


@dataclass(frozen=True)
class RunnerConfig:
    """Where the pipeline runs: engines are options, never code paths."""

    beam_args: tuple[str, ...] = (f"--runner={IN_PROCESS_RUNNER}",)
    data_image: str = "alignpipe-data:latest"  # kfp base image of data steps; Beam SDK based
    trainer_image: str = "alignpipe-trainer:latest"  # kfp base image of train / evaluate
    work_dir: str = "alignpipe-work"  # local runs: demo web, kfp root, MLflow store
    # Google Cloud: where Vertex AI pipeline jobs (and their Dataflow and custom jobs) run.
    gcp_project: str = ""
    gcp_region: str = "us-central1"
    pipeline_root: str = ""  # gs:// folder of the pipeline's artifacts
    service_account: str = ""  # the identity pipeline jobs and their jobs run as; "" = the default
    # Dataflow (a --runner=DataflowRunner in beam_args): project, region, the data image and
    # gs:// temp folders come from the keys above (`beam_pipeline_args`).
    dataflow_machine_type: str = "n2-standard-4"
    dataflow_max_workers: int = 100
    # Every pipeline task's requests (kfp set_cpu_limit / set_memory_limit) and retries.
    data_task_cpu: str = "4"
    data_task_memory: str = "16G"
    trainer_task_cpu: str = "8"
    trainer_task_memory: str = "32G"
    task_retries: int = 2
    # Training as a Vertex AI custom job (`components/custom_job.py`) instead of a pipeline task:
    # one worker of this machine; TPU v2/v3 `cloud-tpu` with TPU_V3 x 8 runs TF's TPUStrategy.
    train_in_custom_job: bool = False
    train_machine_type: str = "cloud-tpu"
    train_accelerator_type: str = "TPU_V3"  # "" for a CPU machine
    train_accelerator_count: int = 8
    train_tpu_topology: str = ""  # TPU v5e / v6e machines (e.g. "2x2"); those need Keras on JAX
    train_scheduling: str = "STANDARD"  # STANDARD | SPOT (preemptible; checkpoints resume it)


@dataclass(frozen=True)
class ScrapeConfig:
    """Where (image, alt-text) pairs come from, and how they are fetched (`alignpipe.data`).

    Three sources give one pair schema: `crawl` (pages of the allowed hosts from
    `seed_urls`; images from any public host), `url_list` (CC3M-style TSV / CSV or parquet
    with LAION / COYO column names) and `warc` (Common Crawl WARC or WAT files).
    """

    source: str = "crawl"  # crawl | url_list | warc
    seed_urls: tuple[str, ...] = ()  # crawl: where to start
    input_paths: tuple[str, ...] = ()  # url_list / warc: files or globs, local or gs://
    url_column: str = ""  # url_list: empty = the first of url, URL, image_url, ...
    caption_column: str = ""  # url_list: empty = the first of caption, TEXT, text, alt, ...
    allowed_hosts: tuple[str, ...] = ()  # pages: host, host:port or *.domain; empty = the seeds' hosts
    image_hosts: str = "any"  # any | allowed (images only from the allowed page hosts)
    use_sitemaps: bool = True  # crawl: /sitemap.xml and robots.txt `Sitemap:` lines seed the frontier
    max_pages: int = 100_000  # per host
    max_depth: int = 20
    user_agent: str = "alignpipe-bot/0.1 (+https://github.com/alignpipe/alignpipe)"
    # Incremental scrapes (scheduled retraining): a folder (local or gs://) keeping what earlier
    # runs fetched (URL, ETag, Last-Modified, content hash); a run sends conditional requests and
    # writes pairs only for new or changed content. "" = every run fetches everything.
    state_dir: str = ""
    # With state_dir: a folder (local or gs://) that every scrape adds its pairs to as a snapshot;
    # the filter then reads all snapshots, so incremental runs train on the union
    # (alignpipe/data/corpus.py). "" = the filter reads this scrape's pairs only.
    corpus_dir: str = ""
    # Politeness: connections per host, a minimum gap between two requests to one host
    # (robots.txt `Crawl-delay` raises it), connections in all.
    per_host_connections: int = 16
    min_host_delay_s: float = 0.0
    max_connections: int = 256
    # Safety: every URL and every redirect hop is checked (scheme, robots.txt, allowed
    # hosts, the address its name resolves to). Private, loopback, link-local and
    # metadata addresses are refused unless a CIDR here allows them.
    allowed_networks: tuple[str, ...] = ()
    max_redirects: int = 5
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 10.0  # between two reads of one body
    request_deadline_s: float = 60.0  # the whole request, body included
    retries: int = 3  # on 429, 5xx, timeouts and refused connections
    retry_backoff_s: float = 1.0  # doubled each try; Retry-After wins when longer
    max_retry_after_s: float = 120.0  # a longer Retry-After ends the retries
    max_image_bytes: int = 20_000_000
    max_image_pixels: int = 50_000_000  # decompression bombs
    max_page_bytes: int = 5_000_000
    # Images: `no` keeps the downloaded bytes; `keep_ratio` shrinks the shorter side to
    # `image_size`, `center_crop` also crops the square (both re-encode, as JPEG / PNG).
    resize_mode: str = "no"
    image_size: int = 256
    jpeg_quality: int = 95
    # Worker processes per machine, each downloading whole work units on its own event loop
    # (decoding, hashing and resizing in threads beside it).
    processes: int = 0  # 0 = one per core
    # Work units: download work is split into units of about this many image URLs; a
    # finished unit is recorded, so a killed scrape, rerun, only does what is missing.
    unit_size: int = 1_000
    output_formats: tuple[str, ...] = ("tfrecord",)  # and webdataset, parquet (img2dataset layout)


@dataclass(frozen=True)
class FilterConfig:
    """ALIGN's frequency-based filters (paper section 3); defaults are the paper's."""

    min_image_short_side: int = 200  # keep when the shorter side is > this
    max_aspect_ratio: float = 3.0  # keep when long side / short side < this
    max_alts_per_image: int = 1000  # drop images with more distinct alt-texts
    max_images_per_alt: int = 10  # drop alt-texts shared by more images
    # Rare tokens: the vocabulary is the top-K unigrams + bigrams of the raw corpus (the paper's
    # rule; a corpus with fewer distinct tokens keeps them all) whose words (unigrams) also occur
    # at least `rare_token_min_word_share` x (raw alt-texts) times: a rate, so it means the same at
    # every scale and cannot bind below 1 / share alt-texts. 0 = the paper's rule alone.
    rare_token_vocab_size: int = 100_000_000  # top-K unigrams + bigrams
    rare_token_min_word_share: float = 0.0  # occurrences per raw alt-text, unigrams only
    min_alt_words: int = 3
    max_alt_words: int = 20
    eval_duplicate_max_hamming: int = 6  # pHash bits; COYO-700M's approach
    unsafe_image_blocklist: str = ""  # file of pHashes of pornographic images
    unsafe_image_max_hamming: int = 6  # pHash bits to a blocklisted image
    num_shards: int = 16
    # Unsafe content beyond the pHash blocklist (alignpipe.filtering.safety); both off by default.
    unsafe_alt_words: str = ""  # UTF-8 word list, a word or phrase per line, # comments; "" = off
    nsfw_image_scorer: str = ""  # "package.module:callable", image bytes -> NSFW score in [0, 1]; "" = off
    nsfw_image_threshold: float = 0.5  # drop when the score is >= this
    # Corpus statistics of the kept pairs against the previous run's (alignpipe.filtering.stats): a
    # histogram whose total-variation distance, or a count whose relative change, exceeds this drifted.
    max_stats_drift: float = 0.2
    # A key (alt-text, image, token) with more pairs than this takes its statistics from a side
    # input instead of a join, so that no worker's group grows with a key's popularity.
    hot_key_pairs: int = 10_000


@dataclass(frozen=True)
class ModelConfig:
    """The dual encoder: EfficientNet image tower, BERT text tower."""

    image_encoder: str = "efficientnet_b7"  # efficientnet_b0..b7, efficientnet[v2]_scaled
    image_width_coefficient: float = 1.0  # *_scaled only
    image_depth_coefficient: float = 1.0  # *_scaled only
    image_dropout: float = 0.2  # stochastic depth, *_scaled only (b0..b7: keras' 0.2)
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
    precision: str = "auto"  # auto (bfloat16 on TPUs and GPUs >= sm80) | float32 | mixed_bfloat16
    steps_per_execution: int = 1  # steps per compiled call: more keeps a TPU busy between calls
    shuffle_buffer: int = 10_000
    log_every_steps: int = 100
    seed: int = 0
    # Warm start: "" trains from scratch; "champion" starts from the registered champion's weights
    # (none yet: from scratch); a model folder (local or gs://) from that model's. Either way the
    # run keeps that model's vocabulary and needs its model.* config; the optimiser starts afresh.
    init_from: str = ""
    # Checkpoints (alignpipe/training/checkpoints.py): every N steps, after the last and on SIGTERM;
    # a rerun resumes from the latest. "" = <model_dir>-checkpoints, beside the model folder (not in
    # it, so that the registered model does not carry optimiser state); trainer.task uses Vertex
    # AI's $AIP_CHECKPOINT_DIR when it is set.
    checkpoint_dir: str = ""
    checkpoint_every_steps: int = 1000  # and after the last step, and on SIGTERM
    keep_checkpoints: int = 3  # the newest N; older ones are deleted


@dataclass(frozen=True)
class EvalConfig:
    """Zero-shot retrieval and classification on named sets (alignpipe/data/eval_sets.py).

    Each set is `name=path` (a bare path is named after its file or folder); its metrics are
    `<name>/<metric>`, and the filter drops training images near any image of any set.
    """

    retrieval_sets: tuple[str, ...] = ()  # Karpathy-format JSON files (Flickr30K, MSCOCO); images beside
    retrieval_split: str = "test"
    # Folders of class folders with a classnames.txt, or ImageNet-style (WordNet-id folders:
    # CLIP's class names and 80 prompt templates are used); a templates.txt in a folder wins.
    classification_sets: tuple[str, ...] = ()
    prompt_templates: tuple[str, ...] = ("a photo of a {}.",)
    recall_ks: tuple[int, ...] = (1, 5, 10)
    batch_size: int = 256


@dataclass(frozen=True)
class RegisterConfig:
    """Champion/challenger promotion in the model registry."""

    model_name: str = "align-dual-encoder"
    champion_alias: str = "champion"
    # `<set>/<metric>`, or a bare metric name for its mean over every set that reports it. The
    # challenger and the champion are both scored on the configured sets in the same run.
    metric: str = "image_to_text_r1"
    higher_is_better: bool = True
    margin: float = 0.0  # the challenger must beat the champion by more than this
    # Also upload each registered version to the Vertex AI Model Registry (the `vertex` preset):
    # one model with a version per run (`parent_model`), the champion alias moved with MLflow's.
    vertex_model_registry: bool = False
    # The Vertex AI prediction container of an uploaded SavedModel (a prebuilt TensorFlow one).
    serving_image: str = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest"


@dataclass(frozen=True)
class TrackingConfig:
    """MLflow tracking; a relative sqlite path lives in runner.work_dir."""

    tracking_uri: str = ""  # empty: sqlite:///<work_dir>/mlflow.db (local only); else http(s)://server
    experiment: str = "alignpipe"
    server_wait_s: float = 120.0  # how long a task waits for the server's /health before failing
    # "" (MLflow's own MLFLOW_TRACKING_TOKEN / _USERNAME / _PASSWORD), "google_id_token" (a
    # Cloud Run server behind IAM) or "secret:projects/P/secrets/S/versions/V" (components/mlflow_auth.py)
    auth: str = ""


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
        "runner.beam_args": (f"--runner={IN_PROCESS_RUNNER}",),
        "runner.task_retries": 0,  # a local failure is a bug or bad input: retrying only delays it
        "train.strategy": "default",
    },
    # Vertex AI Pipelines: Beam on Dataflow from inside the scrape and filter tasks (its options
    # from `runner.*`, `beam_pipeline_args`), a shared MLflow server (`tracking.tracking_uri`,
    # required), every path a gs:// URI under `runner.pipeline_root`.
    "vertex": {
        "runner.beam_args": ("--runner=DataflowRunner", "--experiments=use_runner_v2"),
        "runner.train_in_custom_job": True,
        "register.vertex_model_registry": True,
        "train.strategy": "tpu",
    },
}

EXPERIMENT_PRESETS: dict[str, dict[str, object]] = {
    # The recipe as published: EfficientNet-B7 + BERT-Base, 640-d, batch 16k.
    # Unsafe content: the paper drops pornographic images (image rules image_unsafe / image_nsfw),
    # but no preset can switch them on: the blocklist and the classifier are the deployment's to
    # supply (filter.unsafe_image_blocklist, filter.nsfw_image_scorer); a paper run should set one.
    # The alt-text word list (filter.unsafe_alt_words) is COYO-700M's addition, not the paper's: off.
    "paper": {},
    # A CPU demo that learns in minutes on the generated mini-web (../README.md).
    "tiny": {
        "scrape.max_pages": 500,
        # Filters: the paper's values except where they assume web scale or 289 px crops; nothing
        # here depends on the size of one data set (docs/align.md, "Data: filtering").
        # <= 32 px is icon size (16 / 24 / 32 px) and more than 2x upsampling to the 64 px crop.
        "filter.min_image_short_side": 32,
        # The paper's 1000 needs web-scale re-posting to bind; on one site an image under more
        # than 10 distinct alt-texts (the paper's own reuse bound, for alts) is an example or
        # placeholder image whose alts describe their pages, or a page in > 10 translations.
        "filter.max_alts_per_image": 10,
        # max_images_per_alt 10 and the rare-token rule (top-100M, no word share) are the
        # paper's: both mean the same at any size, and below millions of alt-texts no token count
        # tells a junk token from a real word seen once, so no token is rare there.
        "filter.num_shards": 2,
        # A 64 px model needs no more than this: decoding a stored 96 px image costs a fraction
        # of a web-sized one, and the input pipeline keeps up with the step (docs/results.md).
        "scrape.resize_mode": "keep_ratio",
        "scrape.image_size": 96,
        # The recipe that learns in minutes (docs/results.md, "The tiny recipe"): EfficientNetV2's
        # fused-MBConv stacks, no stochastic depth, AdamW at 1e-3, temperature from 0.1.
        "model.image_encoder": "efficientnetv2_scaled",
        "model.image_width_coefficient": 0.5,
        "model.image_depth_coefficient": 0.25,
        "model.image_dropout": 0.0,
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
        "train.optimizer": "adamw",
        "train.learning_rate": 1e-3,
        "train.weight_decay": 1e-4,
        # From the paper's 1.0 the first few hundred steps only lower the temperature; from 0.1
        # (CLIP starts at 0.07) learning starts at once, and the temperature still learns.
        "train.temperature_init": 0.1,
        "train.temperature_lr_multiplier": 10.0,
        "train.random_flip": False,  # captions name left/right positions
        "train.shuffle_buffer": 4096,
        "train.log_every_steps": 20,
        "train.checkpoint_every_steps": 100,
        "eval.prompt_templates": ("a {}.", "a picture of a {}.", "an image with a {}."),
        "eval.batch_size": 128,
    },
}

_CHOICES: dict[str, tuple[str, ...]] = {
    "scrape.source": ("crawl", "url_list", "warc"),
    "scrape.image_hosts": ("any", "allowed"),
    "scrape.resize_mode": ("no", "keep_ratio", "center_crop"),
    "model.image_encoder": ("efficientnet_scaled", "efficientnetv2_scaled")
    + tuple(f"efficientnet_b{i}" for i in range(8)),
    "train.optimizer": ("lamb", "adamw"),
    "runner.train_scheduling": ("STANDARD", "SPOT"),
    "train.strategy": ("default", "mirrored", "tpu"),
    "train.precision": ("auto", "float32", "mixed_bfloat16"),
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
    cfg = _with_overrides(_presets(env, experiment), overrides)
    return validate(cfg)


def _presets(env: str, experiment: str) -> Config:
    """The defaults with the two presets applied (not validated: overrides may complete them)."""
    return _apply(
        _apply(Config(env=env, experiment=experiment), ENV_PRESETS[env]), EXPERIMENT_PRESETS[experiment]
    )


def _with_overrides(cfg: Config, overrides: typing.Iterable[str]) -> Config:
    parsed: dict[str, object] = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        parsed[key.strip()] = _parse(key.strip(), _field_type(cfg, key.strip()), text.strip())
    return _apply(cfg, parsed)


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
        "runner.train_accelerator_count",
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


OUTPUT_FORMATS = ("tfrecord", "webdataset", "parquet")


def beam_pipeline_args(cfg: Config) -> list[str]:
    """`runner.beam_args`, completed for Dataflow from `runner.*` when it is the runner.

    On Dataflow the workers run the data image (`--sdk_container_image`, built FROM the Beam
    SDK image) in `runner.gcp_project` / `gcp_region`, with temp and staging folders under
    `runner.pipeline_root`; an option already in `beam_args` wins.

    Raises:
        ConfigError: Dataflow without a project or a gs:// pipeline root.
    """
    args = list(cfg.runner.beam_args)
    if "--runner=DataflowRunner" not in args:
        return args
    r = cfg.runner
    _check(bool(r.gcp_project), "runner.gcp_project", r.gcp_project, "a Google Cloud project id for Dataflow")
    _check(r.pipeline_root.startswith("gs://"), "runner.pipeline_root", r.pipeline_root, "a gs:// folder")
    root = r.pipeline_root.rstrip("/")
    options = {
        "project": r.gcp_project,
        "region": r.gcp_region,
        "temp_location": f"{root}/dataflow/temp",
        "staging_location": f"{root}/dataflow/staging",
        "sdk_container_image": r.data_image,
        "machine_type": r.dataflow_machine_type,
        "max_num_workers": str(r.dataflow_max_workers),
        "service_account_email": r.service_account,
    }
    given = {a.split("=", 1)[0].lstrip("-") for a in args}
    return args + [f"--{k}={v}" for k, v in options.items() if v and k not in given]


def with_run_parameters(cfg: Config, experiment: str = "", overrides: typing.Iterable[str] = ()) -> Config:
    """`cfg` as one pipeline run asks for it: another experiment preset and `key=value` overrides.

    The settings `cfg` made beyond its presets (those a template was compiled with) carry over
    to the new experiment preset; then the overrides apply. Used by the pipeline's first task,
    so that one compiled template serves runs on other inputs, sets and presets.

    Example:
        >>> base = load_config("local", "paper", ["train.steps=7"])
        >>> run = with_run_parameters(base, "tiny", ["eval.recall_ks=1"])
        >>> run.experiment, run.train.steps, run.model.embed_dim, run.eval.recall_ks
        ('tiny', 7, 128, (1,))
    """
    if experiment and experiment != cfg.experiment:
        if experiment not in EXPERIMENT_PRESETS:
            raise ConfigError(
                f"unknown experiment preset {experiment!r}; choose one of {sorted(EXPERIMENT_PRESETS)}"
            )
        presets = _presets(cfg.env, cfg.experiment).flat()
        own = {k: v for k, v in cfg.flat().items() if v != presets[k] and k not in ("env", "experiment")}
        cfg = _apply(_presets(cfg.env, experiment), own)
    return validate(_with_overrides(cfg, overrides))


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
