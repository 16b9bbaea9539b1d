"""Which Keras backend trains: `train.backend`, fixed before Keras is first imported."""

from __future__ import annotations

import os
import sys

from alignpipe.errors import ConfigError


def select_keras_backend(backend: str) -> None:
    """Sets `KERAS_BACKEND` to `backend` (`tensorflow` or `jax`) for this process.

    Keras reads `KERAS_BACKEND` once, when it is first imported; an entry point calls
    this with `train.backend` before anything imports Keras.

    Raises:
        ConfigError: Keras is already imported with another backend.
    """
    keras = sys.modules.get("keras")
    if keras is None:
        os.environ["KERAS_BACKEND"] = backend
        return
    if keras.backend.backend() != backend:
        raise ConfigError(
            f"train.backend={backend!r}, but this process already runs Keras on "
            f"{keras.backend.backend()!r}: start a new process (e.g. `python -m trainer.task`) "
            f"or set KERAS_BACKEND={backend} before Keras is imported"
        )
