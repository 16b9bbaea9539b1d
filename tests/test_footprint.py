"""`alignpipe.config.footprint` and `accelerators`: the slice, memory and time of a training job."""

from __future__ import annotations

import pytest

from alignpipe.config import load_config
from alignpipe.config.accelerators import ACCELERATORS, slice_of
from alignpipe.config.footprint import job_timeout_s, memory_per_chip_gb, per_chip_batch, step_seconds
from alignpipe.errors import ConfigError

VERTEX = [
    "tracking.tracking_uri=https://mlflow.example.org",
    "runner.gcp_project=proj",
    "runner.pipeline_root=gs://bkt/root",
]


def test_the_paper_preset_fits_its_slice_by_the_documented_arithmetic():
    cfg = load_config("vertex", "paper", VERTEX)
    assert (cfg.runner.accelerator, cfg.runner.accelerator_chips) == ("tpu-v5p", 128)
    assert per_chip_batch(cfg) == 16_384 // 128
    # EfficientNet-B7 (64.1M weights, 3074 activations per pixel) + BERT-Base on 100k words.
    text = (100_000 + 64) * 768 + 12 * (4 * 768**2 + 2 * 768 * 3072)
    state = (64_097_687 + text) * 16
    activations = 3074 * 289**2 * 2 + 12 * 64 * 768 * (34 + 5 * 12 * 64 / 768)
    assert memory_per_chip_gb(cfg) == pytest.approx((state + 128 * activations) / 1e9)
    assert 60 < memory_per_chip_gb(cfg) < 0.9 * ACCELERATORS["tpu-v5p"].memory_gb
    flops = 3 * (37e9 * (289 / 600) ** 2 + 2 * 12 * (4 * 768**2 + 2 * 768 * 3072) * 64)
    assert step_seconds(cfg) == pytest.approx(128 * flops / (459e12 * 0.15))
    assert job_timeout_s(cfg) == pytest.approx(1_200_000 * step_seconds(cfg) * 3 + 3600, abs=1)


def test_a_measured_step_time_replaces_the_estimate_with_a_smaller_margin():
    cfg = load_config("vertex", "tiny", VERTEX + ["runner.train_step_seconds=2", "train.steps=100"])
    assert (step_seconds(cfg), job_timeout_s(cfg)) == (2.0, 100 * 2 * 1.5 + 3600)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["runner.accelerator=tpu-v4"], "runner.accelerator='tpu-v4' is not allowed; choose one of"),
        (
            ["runner.accelerator=tpu-v5e", "runner.accelerator_chips=2"],
            "runner.accelerator_chips=2 is not a slice",
        ),
        (
            ["runner.accelerator=gpu-a100", "runner.accelerator_chips=4", "train.batch_size=126"],
            "multiple of the 4",
        ),
        (
            [
                "runner.accelerator=gpu-l4",
                "train.batch_size=4096",
                "model.image_size=289",
                "model.image_resize=320",
            ],
            "4096 examples per chip",
        ),
    ],
)
def test_a_slice_that_cannot_run_the_config_fails_with_one_line(overrides, message):
    with pytest.raises(ConfigError, match=message) as raised:
        load_config("vertex", "tiny", VERTEX + overrides)
    assert "\n" not in str(raised.value)


def test_local_runs_ignore_the_slice():
    cfg = load_config("local", "paper", ["runner.accelerator=gpu-l4"])  # no custom job: not checked
    assert cfg.train.strategy == "default"


def test_a_multi_host_slice_has_a_replica_per_vm():
    assert [slice_of("tpu-v5e", n).hosts for n in (1, 4, 8, 16, 256)] == [1, 1, 1, 4, 64]
    assert [slice_of("tpu-v5p", n).hosts for n in (4, 8, 512)] == [1, 2, 128]
