"""ALIGN's text tower: BERT from scratch, [CLS] embedding, linear projection."""

from __future__ import annotations

import keras
import keras_hub


@keras.saving.register_keras_serializable(package="alignpipe")
class TextEncoder(keras.Model):
    """A BERT encoder whose [CLS] output is projected and L2-normalised.

    ALIGN (section 4.1) takes the [CLS] token of BERT's last layer (not BERT's
    tanh "pooled" output) and adds a linear projection to the image embedding
    size.

    Args:
        vocabulary_size: rows of the token embedding table.
        num_layers: transformer layers.
        num_heads: attention heads per layer.
        hidden_dim: transformer width.
        intermediate_dim: feed-forward width.
        max_sequence_length: longest token sequence (position embeddings).
        embed_dim: size of the output embedding (= the image embedding's).
        dropout: dropout rate inside BERT.

    Call:
        inputs: dict of `token_ids` int32 `[batch, seq]`, `segment_ids` int32
            `[batch, seq]` and `padding_mask` bool `[batch, seq]`, as made by
            `AlignTokenizer`; position 0 holds [CLS].

    Returns:
        float32 `[batch, embed_dim]`, unit L2 norm.

    Example:
    ```python
    encoder = TextEncoder(vocabulary_size=1000, num_layers=2, num_heads=2, hidden_dim=128,
                          intermediate_dim=256, max_sequence_length=24, embed_dim=128)
    embeddings = encoder(AlignTokenizer(vocab, 24)(["a red circle"]))  # [1, 128]
    ```
    """

    def __init__(
        self,
        vocabulary_size: int,
        num_layers: int,
        num_heads: int,
        hidden_dim: int,
        intermediate_dim: int,
        max_sequence_length: int,
        embed_dim: int,
        dropout: float = 0.1,
        **kwargs,
    ):
        # === Layers ===
        bert = keras_hub.models.BertBackbone(
            vocabulary_size=vocabulary_size,
            num_layers=num_layers,
            num_heads=num_heads,
            hidden_dim=hidden_dim,
            intermediate_dim=intermediate_dim,
            dropout=dropout,
            max_sequence_length=max_sequence_length,
            name="bert",
        )
        # The [CLS] embedding replaces BERT's tanh pooler, which would get no gradient.
        bert.get_layer("pooled_dense").trainable = False
        projection = keras.layers.Dense(embed_dim, name="text_projection")
        normalize = keras.layers.UnitNormalization(axis=-1, name="text_embedding", dtype="float32")

        # === Functional model ===
        inputs = {
            "token_ids": keras.Input(shape=(None,), dtype="int32", name="token_ids"),
            "segment_ids": keras.Input(shape=(None,), dtype="int32", name="segment_ids"),
            "padding_mask": keras.Input(shape=(None,), dtype="bool", name="padding_mask"),
        }
        cls_embedding = bert(inputs)["sequence_output"][:, 0, :]
        super().__init__(inputs=inputs, outputs=normalize(projection(cls_embedding)), **kwargs)

        # === Config ===
        self.vocabulary_size = vocabulary_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.hidden_dim = hidden_dim
        self.intermediate_dim = intermediate_dim
        self.max_sequence_length = max_sequence_length
        self.embed_dim = embed_dim
        self.dropout = dropout

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "vocabulary_size": self.vocabulary_size,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "hidden_dim": self.hidden_dim,
            "intermediate_dim": self.intermediate_dim,
            "max_sequence_length": self.max_sequence_length,
            "embed_dim": self.embed_dim,
            "dropout": self.dropout,
        }
