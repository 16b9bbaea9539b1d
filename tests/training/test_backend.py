"""train.backend: a choice checked at load time, and Keras' backend fixed before its import."""

from __future__ import annotations

import os
import subprocess
import sys

import keras
import pytest

from alignpipe.config import load_config
from alignpipe.errors import ConfigError
from alignpipe.training.backend import select_keras_backend


def test_the_backend_is_a_checked_choice_and_tensorflow_by_default():
    assert load_config("local", "tiny").train.backend == "tensorflow"
    assert load_config("local", "tiny", ["train.backend=jax"]).train.backend == "jax"
    with pytest.raises(ConfigError, match=r"train.backend='torch' is not allowed; choose one of"):
        load_config("local", "tiny", ["train.backend=torch"])


def test_a_process_already_running_keras_on_another_backend_gets_one_error_line():
    assert keras.backend.backend() == "tensorflow"
    select_keras_backend("tensorflow")  # already so: nothing to do
    with pytest.raises(ConfigError, match="already runs Keras on 'tensorflow'") as error:
        select_keras_backend("jax")
    assert "\n" not in str(error.value)


def test_before_keras_is_imported_the_backend_is_set():
    code = (
        "from alignpipe.training.backend import select_keras_backend\n"
        "select_keras_backend('jax')\n"
        "import keras\n"
        "print(keras.backend.backend())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == "jax"
