"""The configuration's schema: one frozen dataclass per pipeline stage, and `Config` over them.

The defaults are the paper's recipe (docs/align.md, the `paper` experiment preset). A `Config`
travels as JSON (`to_json` / `from_json`), unchanged, to every component and to the trainer.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from alignpipe.config.keys import _apply, _build
from alignpipe.config.runner_args import IN_PROCESS_RUNNER
from alignpipe.config.validation import validate
from alignpipe.errors import ConfigError


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
    # A new project's regional Compute Engine quota (CPUS) is 24 vCPUs in many regions: 5 workers
    # x 4 vCPUs fit beside a pipeline task. Raise it with the quota (ALIGN's 1.8B pairs need far more).
    dataflow_max_workers: int = 5
    # Every pipeline task's requests (kfp set_cpu_limit / set_memory_limit) and retries.
    data_task_cpu: str = "4"
    data_task_memory: str = "16G"
    trainer_task_cpu: str = "8"
    trainer_task_memory: str = "32G"
    task_retries: int = 2
    # Training as a Vertex AI custom job (`components/custom_job.py`) instead of a pipeline task,
    # on `accelerator_chips` chips of `accelerator` (alignpipe/config/accelerators.py: the machine
    # type, TPU topology and VMs of that slice, and the image of its kind below). The per-chip
    # batch must fit a chip's memory, checked at load time (alignpipe/config/footprint.py).
    train_in_custom_job: bool = False
    accelerator: str = "tpu-v5e"  # cpu | tpu-v5e | tpu-v6e | tpu-v5p | gpu-a100 | gpu-h100 | gpu-l4
    accelerator_chips: int = 8  # chips in the slice (GPUs in the VM)
    trainer_tpu_image: str = "alignpipe-trainer-tpu:latest"  # the custom job's image on TPUs
    trainer_gpu_image: str = "alignpipe-trainer-gpu:latest"  # ... on GPUs (CPU: trainer_image)
    # Seconds per step on the slice, once measured; 0 = the estimate. The job's timeout is
    # train.steps x this x 1.5 (x 3 on the estimate) + 1 h (footprint.job_timeout_s).
    train_step_seconds: float = 0.0
    # STANDARD | SPOT (preemptible) | FLEX_START (waits up to 24 h for capacity, then runs up to
    # its timeout); a preempted or restarted worker resumes from the job's checkpoints.
    train_scheduling: str = "STANDARD"


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
    """Optimisation (paper section 4.2; docs/align.md, 'Loss and optimisation')."""

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
    # tensorflow (tf.distribute, train.strategy) | jax (one SPMD program over every device of every
    # process: TPU v5e/v6e/v5p slices, GPUs; docs/training.md). TensorFlow stays the CPU default: on
    # CPU the JAX step was about 12x slower.
    backend: str = "tensorflow"
    strategy: str = "default"  # default | mirrored | tpu (train.backend=tensorflow only)
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
    # A model is promoted only if its score is above this many times the metric's chance level
    # (`<metric>_chance`), first model included: a model at chance never becomes the champion.
    min_chance_ratio: float = 2.0
    # Also upload each registered version to the Vertex AI Model Registry (the `vertex` preset):
    # one model with a version per run (`parent_model`), the champion alias moved with MLflow's.
    vertex_model_registry: bool = False
    # The Vertex AI prediction container of an uploaded model: the project's serving image
    # (infra/docker/serving.Dockerfile, `alignpipe serve`), which cloudbuild.yaml pushes as
    # REGION-docker.pkg.dev/PROJECT/REPO/alignpipe-serving:TAG and passes to compile. A prebuilt
    # TensorFlow Serving image cannot serve the model: its WordPiece ops are tensorflow-text's.
    serving_image: str = "alignpipe-serving:latest"


@dataclass(frozen=True)
class IndexConfig:
    """The corpus index built after registration (`alignpipe.search.build`)."""

    enabled: bool = True  # the DAG's index stage, after register
    # Where the index is kept and extended run after run (a folder or gs://); "" = the index
    # task's own output artifact, a new index each run. Local runs default to <work_dir>/index.
    path: str = ""
    image_batch_size: int = 32  # images per call of the SavedModel's embed_image
    text_batch_size: int = 256  # alt-texts per call of embed_text
    # Below this many vectors a search is exact (a matrix product beats a graph there, see
    # docs/benchmarks.md); from it on, an HNSW graph answers.
    ann_min_vectors: int = 20000


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
    index: IndexConfig = field(default_factory=IndexConfig)
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
