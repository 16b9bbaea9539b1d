"""The data-parallel JAX step over 8 emulated CPU devices equals the one-device step.

The worker (tests/training/jax_step_worker.py) runs in a subprocess with
`KERAS_BACKEND=jax` and `XLA_FLAGS=--xla_force_host_platform_device_count=8`: this process
already runs Keras on TensorFlow, and the device count is fixed when JAX starts. On the
same global batch of 16 (2 per device), float32, it compares the sharded step with the
one-device step. Observed on a 2-core x86 CPU (jax 0.10.2): loss 8.530067 vs 8.530066
(difference 9.5e-7), gradients' largest difference 6.5e-5 against a largest gradient of
50.6 (1.3e-6 relative), the two steps' losses within 1.0e-5, the temperature after two
steps equal to every printed digit (0.1020215), and the two runs' weight updates within
7e-4 of each other relative to the update's norm (float sums in another order; Adam-type
steps divide by sqrt(v), so near-zero gradients amplify rounding).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

EMULATED_DEVICES = 8


@pytest.mark.large
def test_sharded_step_equals_one_device_step():
    environment = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={EMULATED_DEVICES}",
    }
    done = subprocess.run(
        [sys.executable, "-m", "tests.training.jax_step_worker"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])

    assert result["devices"] == [1, EMULATED_DEVICES]
    one, eight = result["loss"]
    assert result["loss_difference"] <= 1e-6 * one
    assert result["gradient_difference"] <= 1e-5 * result["largest_gradient"]
    assert result["step_losses_difference"] <= 1e-4
    assert result["temperature"][1] == pytest.approx(result["temperature"][0], rel=1e-6)
    assert result["temperature"][0] != pytest.approx(0.1, rel=1e-4)  # the temperature was trained
    assert result["weights_moved"] > 0
    assert result["update_relative_difference"] <= 1e-2
