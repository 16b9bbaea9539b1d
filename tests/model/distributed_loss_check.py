"""Runs ContrastiveLoss on 2 logical CPUs under MirroredStrategy and on one device.

Run as a script (logical devices must be configured before TensorFlow initialises);
prints one JSON line with both losses and gradients, compared by
test_contrastive_loss.py.
"""

from __future__ import annotations

import json

import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from alignpipe.model.contrastive_loss import ContrastiveLoss  # noqa: E402

BATCH, FEATURES, DIM, SMOOTHING = 8, 6, 5, 0.1


def embed(kernel, x):
    return tf.math.l2_normalize(tf.matmul(x, kernel), axis=1)


def main() -> None:
    rng = np.random.default_rng(0)
    images = rng.normal(size=(BATCH, FEATURES)).astype("float32")
    texts = rng.normal(size=(BATCH, FEATURES)).astype("float32")
    kernel_init = rng.normal(size=(FEATURES, DIM)).astype("float32")
    loss_fn = ContrastiveLoss(SMOOTHING)

    kernel, temperature = tf.Variable(kernel_init), tf.Variable(0.3)
    with tf.GradientTape() as tape:
        single = loss_fn(embed(kernel, images), embed(kernel, texts), temperature)
    single_grads = tape.gradient(single, [kernel, temperature])

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        d_kernel, d_temperature = tf.Variable(kernel_init), tf.Variable(0.3)
    dataset = tf.data.Dataset.from_tensor_slices((images, texts)).batch(BATCH)
    batch = next(iter(strategy.experimental_distribute_dataset(dataset)))

    @tf.function
    def replica_step(batch):
        x, y = batch
        with tf.GradientTape() as tape:
            loss = loss_fn(embed(d_kernel, x), embed(d_kernel, y), d_temperature)
        return loss, tape.gradient(loss, [d_kernel, d_temperature])

    losses, grads = strategy.run(replica_step, args=(batch,))
    total = strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)
    summed = [strategy.reduce(tf.distribute.ReduceOp.SUM, g, axis=None) for g in grads]
    print(
        json.dumps(
            {
                "replicas": strategy.num_replicas_in_sync,
                "replica_losses": [float(x) for x in strategy.experimental_local_results(losses)],
                "distributed_loss": float(total),
                "single_loss": float(single),
                "image_embeddings": embed(kernel_init, images).numpy().tolist(),
                "text_embeddings": embed(kernel_init, texts).numpy().tolist(),
                "temperature": 0.3,
                "label_smoothing": SMOOTHING,
                "distributed_grad_kernel": summed[0].numpy().tolist(),
                "single_grad_kernel": single_grads[0].numpy().tolist(),
                "distributed_grad_temperature": float(summed[1]),
                "single_grad_temperature": float(single_grads[1]),
            }
        )
    )


if __name__ == "__main__":
    main()
