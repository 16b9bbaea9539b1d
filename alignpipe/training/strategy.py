"""The `tf.distribute` strategy named by `train.strategy`: an option, not a code path."""

from __future__ import annotations

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
