"""Configuration: merge order, overrides, validation, JSON round trip."""

from __future__ import annotations

import pytest

from alignpipe.config import EXPERIMENT_PRESETS, Config, load_config
from alignpipe.errors import ConfigError


def test_paper_preset_is_the_published_recipe():
    cfg = load_config("local", "paper")
    assert (cfg.filter.min_image_short_side, cfg.filter.max_aspect_ratio) == (200, 3.0)
    assert (cfg.filter.max_alts_per_image, cfg.filter.max_images_per_alt) == (1000, 10)
    assert (cfg.filter.min_alt_words, cfg.filter.max_alt_words) == (3, 20)
    assert cfg.filter.rare_token_vocab_size == 100_000_000 and cfg.filter.rare_token_min_word_share == 0.0
    assert (cfg.train.batch_size, cfg.train.learning_rate, cfg.train.warmup_steps) == (16384, 1e-3, 10_000)
    assert (cfg.train.temperature_init, cfg.train.label_smoothing) == (1.0, 0.1)
    assert cfg.train.optimizer == "lamb" and cfg.train.weight_decay == 1e-5
    assert cfg.model.max_text_tokens == 64 and cfg.model.embed_dim == 640


def test_overrides_win_over_presets_which_win_over_defaults():
    cfg = load_config(
        "local",
        "tiny",
        [
            "train.steps=7",
            "scrape.seed_urls=http://a/,http://b/",
            "train.random_flip=true",
            "train.learning_rate=0.5",
        ],
    )
    assert cfg.train.steps == 7
    assert cfg.scrape.seed_urls == ("http://a/", "http://b/")
    assert cfg.train.random_flip is True and cfg.train.learning_rate == 0.5
    assert cfg.train.batch_size == EXPERIMENT_PRESETS["tiny"]["train.batch_size"]
    assert cfg.train.label_smoothing == 0.1  # default, untouched by tiny


def test_json_round_trip_is_exact():
    cfg = load_config("local", "tiny", ["eval.recall_ks=1,5"])
    assert Config.from_json(cfg.to_json()) == cfg


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.stepz=1"], "unknown config key 'train.stepz'"),
        (["nope.steps=1"], "unknown config key 'nope.steps'"),
        (["train=1"], "is a section"),
        (["train.steps"], "key=value"),
        (["train.steps=ten"], "train.steps='ten' is not a valid int"),
        (["train.random_flip=maybe"], "train.random_flip='maybe' is not a valid bool"),
        (["train.steps=0"], "train.steps=0 must be > 0"),
        (["train.strategy=gpu"], "train.strategy='gpu' is not allowed"),
        (["filter.min_alt_words=30"], "filter.min_alt_words=30"),
        (["model.image_size=512"], "model.image_resize"),
        (["model.text_heads=3"], "model.text_hidden_dim"),
        (["eval.prompt_templates=a photo"], "a template containing {}"),
        (["scrape.seed_urls=example.org"], "an http(s) URL"),
        (["filter.rare_token_min_word_share=-0.1"], "filter.rare_token_min_word_share=-0.1 must be >= 0"),
        (
            ["filter.rare_token_min_word_share=2"],
            "rare_token_min_word_share=2.0 is not allowed: must be <= 1",
        ),
        (["register.min_chance_ratio=0.5"], "register.min_chance_ratio=0.5 is not allowed: must be >= 1"),
    ],
)
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(
        ConfigError,
        match=message.replace("(", r"\(").replace(")", r"\)").replace("{", r"\{").replace("}", r"\}"),
    ):
        load_config("local", "tiny", overrides)


def test_unknown_presets():
    with pytest.raises(ConfigError, match="unknown environment preset 'mars'"):
        load_config("mars", "tiny")
    with pytest.raises(ConfigError, match="unknown experiment preset 'huge'"):
        load_config("local", "huge")


def test_from_json_rejects_unknown_keys_and_wrong_types():
    with pytest.raises(ConfigError, match="unknown config key 'train.stepz'"):
        Config.from_json('{"train": {"stepz": 1}}')
    with pytest.raises(ConfigError, match="train.steps='1' must be of type int"):
        Config.from_json('{"train": {"steps": "1"}}')
    with pytest.raises(ConfigError, match="malformed"):
        Config.from_json("{")


def test_every_preset_value_is_valid():
    for experiment in EXPERIMENT_PRESETS:
        load_config("local", experiment)


def test_the_tiny_preset_keeps_the_papers_corpus_relative_filters():
    """The rare-token vocabulary and the boilerplate bound mean the same at any corpus size."""
    cfg, paper = load_config("local", "tiny"), load_config("local", "paper")
    for key in ("rare_token_vocab_size", "rare_token_min_word_share", "max_images_per_alt"):
        assert getattr(cfg.filter, key) == getattr(paper.filter, key), key
    cfg = load_config("local", "tiny", ["filter.rare_token_min_word_share=1e-7"])
    assert cfg.filter.rare_token_min_word_share == 1e-7
    assert Config.from_json(cfg.to_json()) == cfg


# Where a Vertex AI run happens, valid: every key the vertex preset requires.
VERTEX_TARGET = {
    "tracking.tracking_uri": "https://mlflow.example",
    "runner.gcp_project": "proj",
    "runner.pipeline_root": "gs://bkt/root",
}


def vertex_overrides(**changed: str) -> list[str]:
    return [
        f"{k}={v}"
        for k, v in {**VERTEX_TARGET, **{k.replace("__", "."): v for k, v in changed.items()}}.items()
    ]


def test_vertex_needs_a_tracking_server():
    with pytest.raises(ConfigError, match="tracking.tracking_uri=''.*shared MLflow server"):
        load_config("vertex", "paper")
    cfg = load_config("vertex", "paper", vertex_overrides())
    assert cfg.train.strategy == "tpu"


@pytest.mark.parametrize(
    "changed, refusal",
    [
        (
            {"runner__gcp_project": ""},
            "runner.gcp_project='' is not allowed: must be the Google Cloud project",
        ),
        ({"runner__pipeline_root": ""}, "runner.pipeline_root='' is not allowed: must be a gs://BUCKET/PATH"),
        ({"runner__pipeline_root": "/tmp/root"}, "runner.pipeline_root='/tmp/root' is not allowed"),
        ({"runner__pipeline_root": "gs://"}, "runner.pipeline_root='gs://' is not allowed"),
        (
            {"tracking__tracking_uri": "http://mlflow.example"},
            "tracking_uri='http://mlflow.example'.*https URI",
        ),
    ],
)
def test_vertex_refuses_a_target_it_cannot_run_in(changed, refusal):
    with pytest.raises(ConfigError, match=refusal) as caught:
        load_config("vertex", "tiny", vertex_overrides(**changed))
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "image, registry",
    [
        ("us-central1-docker.pkg.dev/proj/repo/alignpipe-data:v1", True),
        ("us-docker.pkg.dev/proj/repo/alignpipe-data@sha256:" + "0" * 64, True),
        ("europe-west4-docker.pkg.dev/proj/repo/team/alignpipe-data", True),
        ("gcr.io/proj/alignpipe-data:v1", True),
        ("eu.gcr.io/proj/alignpipe-data", True),
        ("alignpipe-data:latest", False),  # Docker Hub
        ("docker.io/library/alignpipe-data:v1", False),
        ("us-central1-docker.pkg.dev/proj/alignpipe-data:v1", False),  # no repository
        ("us-central1-docker.pkg.dev/proj/repo/alignpipe-data:v1.2+b/x", False),  # not a tag
        ("us-central1-docker.pkg.dev/proj/repo/Alignpipe-data:v1", False),  # capitals
    ],
)
def test_registry_images(image, registry):
    from alignpipe.config.validation import is_registry_image

    assert is_registry_image(image) is registry


def test_dataflow_options_come_from_the_runner_keys():
    from alignpipe.config import beam_pipeline_args

    cfg = load_config(
        "vertex",
        "paper",
        [
            "tracking.tracking_uri=https://mlflow.example",
            "runner.gcp_project=proj",
            "runner.gcp_region=europe-west4",
            "runner.pipeline_root=gs://bkt/root/",
            "runner.data_image=europe-west4-docker.pkg.dev/proj/r/alignpipe-data:v1",
            "runner.service_account=pipelines@proj.iam.gserviceaccount.com",
            "runner.beam_args=--runner=DataflowRunner,--max_num_workers=7",
        ],
    )
    assert beam_pipeline_args(cfg) == [
        "--runner=DataflowRunner",
        "--max_num_workers=7",  # given: wins over runner.dataflow_max_workers
        "--project=proj",
        "--region=europe-west4",
        "--temp_location=gs://bkt/root/dataflow/temp",
        "--staging_location=gs://bkt/root/dataflow/staging",
        "--sdk_container_image=europe-west4-docker.pkg.dev/proj/r/alignpipe-data:v1",
        "--machine_type=n2-standard-4",
        "--service_account_email=pipelines@proj.iam.gserviceaccount.com",
    ]
    with pytest.raises(ConfigError, match="runner.pipeline_root=''.*gs://"):
        beam_pipeline_args(cfg.replace(runner__pipeline_root=""))
    assert beam_pipeline_args(load_config("local", "tiny"))[0].endswith("FnApiRunner")


def test_dataflow_fits_a_new_projects_cpu_quota_by_default():
    """A new project's regional CPUS quota, 24 vCPUs: the default Dataflow job stays within it."""
    from alignpipe.config import beam_pipeline_args

    cfg = load_config("vertex", "paper", vertex_overrides())
    args = dict(a.lstrip("-").split("=", 1) for a in beam_pipeline_args(cfg))
    vcpus = int(args["machine_type"].rsplit("-", 1)[1])  # n2-standard-4: 4 vCPUs
    assert int(args["max_num_workers"]) * vcpus <= 24


def test_a_run_switches_preset_and_keeps_the_settings_made_beyond_it():
    from alignpipe.config import with_run_parameters

    base = load_config("local", "tiny", ["train.steps=9", "runner.data_image=img:1"])
    run = with_run_parameters(base, "paper", ["eval.recall_ks=1"])
    assert run.experiment == "paper" and run.model.image_encoder == "efficientnet_b7"
    assert (run.train.steps, run.runner.data_image, run.eval.recall_ks) == (9, "img:1", (1,))
    assert with_run_parameters(base) == base
    with pytest.raises(ConfigError, match="unknown experiment preset 'huge'"):
        with_run_parameters(base, "huge")
