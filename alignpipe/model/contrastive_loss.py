"""ALIGN's contrastive loss over the global batch."""

from __future__ import annotations

import tensorflow as tf


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

    def __call__(self, image_embeddings, text_embeddings, temperature) -> tf.Tensor:
        image_embeddings = tf.cast(image_embeddings, tf.float32)
        text_embeddings = tf.cast(text_embeddings, tf.float32)
        all_images, all_texts, first_row = _gather_global_batch(image_embeddings, text_embeddings)
        local_batch = tf.shape(image_embeddings)[0]
        global_batch = tf.shape(all_images)[0]
        labels = first_row + tf.range(local_batch)
        inverse_temperature = 1.0 / tf.cast(temperature, tf.float32)
        image_to_text = tf.matmul(image_embeddings, all_texts, transpose_b=True) * inverse_temperature
        text_to_image = tf.matmul(text_embeddings, all_images, transpose_b=True) * inverse_temperature
        total = self._smoothed_cross_entropy(image_to_text, labels, global_batch)
        total += self._smoothed_cross_entropy(text_to_image, labels, global_batch)
        return total / tf.cast(global_batch, tf.float32)

    def _smoothed_cross_entropy(self, logits, labels, num_classes) -> tf.Tensor:
        """Sum over rows of cross-entropy against smoothed one-hot targets.

        Args:
            logits: `[rows, num_classes]`.
            labels: int32 `[rows]`, the positive column of each row.
            num_classes: int32 scalar.
        """
        targets = tf.one_hot(labels, num_classes) * (1.0 - self.label_smoothing)
        targets += self.label_smoothing / tf.cast(num_classes, tf.float32)
        return -tf.reduce_sum(targets * tf.nn.log_softmax(logits, axis=-1))

    def get_config(self) -> dict:
        return {"label_smoothing": self.label_smoothing}


def _gather_global_batch(image_embeddings, text_embeddings):
    """All replicas' embeddings `[global_batch, dim]` and this replica's first global row."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return image_embeddings, text_embeddings, tf.constant(0, tf.int32)
    all_images = context.all_gather(image_embeddings, axis=0)
    all_texts = context.all_gather(text_embeddings, axis=0)
    replica_id = tf.cast(context.replica_id_in_sync_group, tf.int32)
    return all_images, all_texts, replica_id * tf.shape(image_embeddings)[0]
