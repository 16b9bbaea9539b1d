"""ALIGN's contrastive loss over the global batch."""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops


class ContrastiveLoss:
    """Normalised softmax over in-batch negatives, both directions, label smoothing.

    Jia et al., "Scaling Up Visual and Vision-Language Representation Learning With
    Noisy Text Supervision", ICML 2021, section 4.1 (equations 1-2): for image
    embeddings x_i and text embeddings y_j of a batch of N pairs, with logits
    `x_i . y_j / temperature`,

        L = -1/N sum_i log softmax_j(x_i . y_j / T)[i]      (image-to-text)
            -1/N sum_j log softmax_i(x_i . y_j / T)[j]      (text-to-image)

    with label smoothing 0.1 on the one-hot targets (section 5; smoothing as in
    Keras' `categorical_crossentropy`: `(1 - s) * one_hot + s / N`).

    Under a `tf.distribute` strategy the embeddings of ALL replicas are gathered
    before the softmax, so the negatives are the global batch (section 4.1, "we
    concatenate embeddings from all computing cores"). Each replica computes the
    loss of its own rows against the global batch, with its positives at
    `replica_id * local_batch + row`, divided by the global batch size: the sum of
    the replicas' losses (and, since `all_gather`'s gradient sums the replicas'
    upstream gradients, of their gradients) equals the single-device loss on the
    concatenated batch. Optimisers that all-reduce gradients by SUM (Keras on
    `tf.distribute`) then apply the single-device gradient.

    On the JAX backend there is no replica context: the step is one SPMD program over
    the global batch, sharded by `jax.jit` (`alignpipe.training.jax_step`), so the
    `[global_batch, global_batch]` logits are computed as on one device and XLA inserts
    the all-gathers itself. The maths is in `keras.ops` and runs on either backend.

    Args:
        label_smoothing: in [0, 1).

    Call:
        image_embeddings: float `[local_batch, dim]`, unit norm.
        text_embeddings: float `[local_batch, dim]`, unit norm; row i pairs with
            image row i.
        temperature: float scalar > 0.

    Returns:
        float32 scalar: this replica's share of the global-batch loss (the whole
        loss outside a strategy).

    Example:
    ```python
    loss = ContrastiveLoss(label_smoothing=0.1)(image_emb, text_emb, model.temperature)
    ```
    """

    def __init__(self, label_smoothing: float = 0.1):
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing={label_smoothing} must be in [0, 1)")
        self.label_smoothing = label_smoothing

    def __call__(self, image_embeddings, text_embeddings, temperature):
        image_embeddings = ops.cast(image_embeddings, "float32")
        text_embeddings = ops.cast(text_embeddings, "float32")
        all_images, all_texts, first_row = _gather_global_batch(image_embeddings, text_embeddings)
        local_batch = ops.shape(image_embeddings)[0]
        labels = first_row + ops.arange(local_batch, dtype="int32")
        inverse_temperature = 1.0 / ops.cast(temperature, "float32")
        image_to_text = ops.matmul(image_embeddings, ops.transpose(all_texts)) * inverse_temperature
        text_to_image = ops.matmul(text_embeddings, ops.transpose(all_images)) * inverse_temperature
        total = self._smoothed_cross_entropy(image_to_text, labels)
        total += self._smoothed_cross_entropy(text_to_image, labels)
        return total / ops.cast(ops.shape(all_images)[0], "float32")

    def _smoothed_cross_entropy(self, logits, labels):
        """Sum over rows of cross-entropy against smoothed one-hot targets.

        With targets `(1 - s) * one_hot + s / N`, the cross-entropy of a row is
        `-(1 - s) * log_p[label] - s / N * sum(log_p)`: no `[rows, N]` one-hot is built.

        Args:
            logits: `[rows, num_classes]`.
            labels: int32 `[rows]`, the positive column of each row.
        """
        log_probabilities = ops.log_softmax(logits, axis=-1)
        positives = ops.take_along_axis(log_probabilities, ops.expand_dims(labels, -1), axis=-1)
        num_classes = ops.cast(ops.shape(logits)[-1], "float32")
        return -(1.0 - self.label_smoothing) * ops.sum(positives) - (
            self.label_smoothing / num_classes
        ) * ops.sum(log_probabilities)

    def get_config(self) -> dict:
        return {"label_smoothing": self.label_smoothing}


def _gather_global_batch(image_embeddings, text_embeddings):
    """All replicas' embeddings `[global_batch, dim]` and this replica's first global row."""
    if keras.backend.backend() != "tensorflow":
        return image_embeddings, text_embeddings, 0
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return image_embeddings, text_embeddings, tf.constant(0, tf.int32)
    all_images = context.all_gather(image_embeddings, axis=0)
    all_texts = context.all_gather(text_embeddings, axis=0)
    replica_id = tf.cast(context.replica_id_in_sync_group, tf.int32)
    return all_images, all_texts, replica_id * tf.shape(image_embeddings)[0]
