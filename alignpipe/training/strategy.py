"""The `tf.distribute` strategy named by `train.strategy`: an option, not a code path."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import keras
import tensorflow as tf

from alignpipe.errors import ConfigError


def make_strategy(name: str) -> tf.distribute.Strategy:
    """Returns the strategy for `train.strategy`.

    Args:
        name: `default` (one device, no distribution), `mirrored` (every local GPU,
            or the logical CPUs configured before TensorFlow starts) or `tpu`
            (the TPU attached to this VM, as on Vertex AI `cloud-tpu` workers).

    Raises:
        ConfigError: unknown name.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu="local")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ConfigError(f"train.strategy={name!r} is not allowed; choose one of ['default', 'mirrored', 'tpu']")


def precision_policy(precision: str, strategy: tf.distribute.Strategy) -> str:
    """The Keras dtype policy for `train.precision` on this strategy's devices.

    `auto` is `mixed_bfloat16` where bfloat16 matrix units make it pay (TPUs, and GPUs
    of compute capability 8.0 or more) and `float32` elsewhere, CPUs included.

    Raises:
        ConfigError: unknown precision.
    """
    if precision in ("float32", "mixed_bfloat16"):
        return precision
    if precision != "auto":
        raise ConfigError(
            f"train.precision={precision!r} is not allowed; "
            "choose one of ['auto', 'float32', 'mixed_bfloat16']"
        )
    if isinstance(strategy, tf.distribute.TPUStrategy):
        return "mixed_bfloat16"
    for gpu in tf.config.list_physical_devices("GPU"):
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0))
        if capability >= (8, 0):
            return "mixed_bfloat16"
    return "float32"


@contextlib.contextmanager
def dtype_policy(policy: str) -> Iterator[None]:
    """Builds layers under Keras' global dtype `policy`, restoring the previous one after."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
