"""WarmupLinearDecay values."""

from __future__ import annotations

import numpy as np
import pytest

from alignpipe.training.schedule import WarmupLinearDecay


def rates(schedule: WarmupLinearDecay, steps: list[int]) -> list[float]:
    return [float(schedule(step)) for step in steps]


def test_warmup_then_linear_decay_to_zero():
    schedule = WarmupLinearDecay(peak=1e-3, warmup_steps=10, total_steps=110)
    got = rates(schedule, [0, 4, 9, 10, 60, 109, 110, 500])
    want = [1e-4, 5e-4, 1e-3, 1e-3, 5e-4, 1e-5, 0.0, 0.0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-12)


def test_paper_schedule_peaks_at_10k():
    schedule = WarmupLinearDecay(peak=1e-3, warmup_steps=10_000, total_steps=1_200_000)
    np.testing.assert_allclose(rates(schedule, [9_999, 605_000]), [1e-3, 5e-4], rtol=1e-5)


def test_no_warmup_starts_at_peak():
    schedule = WarmupLinearDecay(peak=2.0, warmup_steps=0, total_steps=4)
    np.testing.assert_allclose(rates(schedule, [0, 1, 2, 3, 4]), [2.0, 1.5, 1.0, 0.5, 0.0])


def test_run_shorter_than_warmup_ends_mid_warmup():
    schedule = WarmupLinearDecay(peak=1.0, warmup_steps=10, total_steps=3)
    np.testing.assert_allclose(rates(schedule, [0, 1, 2, 3]), [0.1, 0.2, 0.3, 0.0], rtol=1e-6)


def test_config_round_trip_and_bad_values():
    schedule = WarmupLinearDecay(peak=1e-3, warmup_steps=5, total_steps=50)
    assert WarmupLinearDecay.from_config(schedule.get_config()).get_config() == schedule.get_config()
    with pytest.raises(ValueError):
        WarmupLinearDecay(peak=1e-3, warmup_steps=-1, total_steps=50)
