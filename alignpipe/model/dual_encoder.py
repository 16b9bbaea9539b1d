"""The ALIGN dual encoder: image tower, text tower, learnable temperature."""

from __future__ import annotations

import keras
from keras import ops

from alignpipe.config import ModelConfig, TrainConfig
from alignpipe.model.image_encoder import ImageEncoder
from alignpipe.model.text_encoder import TextEncoder


@keras.saving.register_keras_serializable(package="alignpipe")
class DualEncoder(keras.Model):
    """Two towers that embed images and texts into one unit-norm space.

    The softmax temperature is one learnable scalar (ALIGN section 4.1,
    initialised to 1.0), parametrised as
    `temperature = temperature_init * exp(temperature_lr_multiplier * theta)`
    with `theta` initialised to 0. For Adam-type optimisers this makes
    `temperature_lr_multiplier` a learning-rate multiplier on `log(temperature)`:
    Adam's step on `theta` is `lr * m_hat / (sqrt(v_hat) + eps)`, which does not
    depend on the gradient's scale (up to eps), so `log(temperature)` moves by
    `multiplier * lr * m_hat / (sqrt(v_hat) + eps)`: the step of Adam on
    `log(temperature)` itself with learning rate `multiplier * lr`. A multiplier of
    0 freezes the temperature at `temperature_init` (the paper's fixed-temperature
    ablation). `theta` is a scalar and must not get weight decay.

    Args:
        image_encoder: an `ImageEncoder`.
        text_encoder: a `TextEncoder` with the same `embed_dim`.
        temperature_init: the temperature before training.
        temperature_lr_multiplier: see above.

    Call:
        inputs: dict of `images` float32 `[batch, size, size, 3]` RGB in [0, 255],
            and `token_ids`, `segment_ids`, `padding_mask` `[batch, seq]`.

    Returns:
        dict of `image_embeddings` and `text_embeddings`, float32 `[batch, embed_dim]`.

    Example:
    ```python
    model = DualEncoder(ImageEncoder("efficientnet_b0", 64, 320), TextEncoder(..., embed_dim=320))
    outputs = model({"images": images, **tokenizer(texts)})
    loss = ContrastiveLoss(0.1)(outputs["image_embeddings"], outputs["text_embeddings"],
                                model.temperature)
    ```
    """

    def __init__(
        self,
        image_encoder: ImageEncoder,
        text_encoder: TextEncoder,
        temperature_init: float = 1.0,
        temperature_lr_multiplier: float = 1.0,
        **kwargs,
    ):
        if image_encoder.embed_dim != text_encoder.embed_dim:
            raise ValueError(
                f"image embed_dim {image_encoder.embed_dim} != text embed_dim {text_encoder.embed_dim}"
            )
        super().__init__(**kwargs)
        # === Layers ===
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.temperature_parameter = self.add_weight(
            shape=(), initializer="zeros", trainable=True, name="temperature_parameter"
        )
        self.built = True

        # === Config ===
        self.temperature_init = temperature_init
        self.temperature_lr_multiplier = temperature_lr_multiplier

    @property
    def temperature(self):
        """The softmax temperature, a float32 scalar tensor."""
        return self.temperature_init * ops.exp(self.temperature_lr_multiplier * self.temperature_parameter)

    def call(self, inputs: dict, training: bool = False) -> dict:
        text_inputs = {k: inputs[k] for k in ("token_ids", "segment_ids", "padding_mask")}
        return {
            "image_embeddings": self.image_encoder(inputs["images"], training=training),
            "text_embeddings": self.text_encoder(text_inputs, training=training),
        }

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "image_encoder": keras.layers.serialize(self.image_encoder),
            "text_encoder": keras.layers.serialize(self.text_encoder),
            "temperature_init": self.temperature_init,
            "temperature_lr_multiplier": self.temperature_lr_multiplier,
        }

    @classmethod
    def from_config(cls, config: dict, custom_objects=None) -> DualEncoder:
        config = dict(config)
        for key in ("image_encoder", "text_encoder"):
            config[key] = keras.layers.deserialize(config[key], custom_objects=custom_objects)
        return cls(**config)


def build_dual_encoder(model: ModelConfig, train: TrainConfig) -> DualEncoder:
    """A randomly initialised `DualEncoder` sized by the config.

    Args:
        model: tower sizes (`model.*`).
        train: `temperature_init` and `temperature_lr_multiplier`.
    """
    image_encoder = ImageEncoder(
        architecture=model.image_encoder,
        image_size=model.image_size,
        embed_dim=model.embed_dim,
        width_coefficient=model.image_width_coefficient,
        depth_coefficient=model.image_depth_coefficient,
        dropout=model.image_dropout,
        name="image_encoder",
    )
    return DualEncoder(
        image_encoder,
        build_text_encoder(model),
        temperature_init=train.temperature_init,
        temperature_lr_multiplier=train.temperature_lr_multiplier,
        name="dual_encoder",
    )


def build_text_encoder(model: ModelConfig) -> TextEncoder:
    """A randomly initialised BERT text tower sized by `model.*`."""
    return TextEncoder(
        vocabulary_size=model.vocab_size,
        num_layers=model.text_layers,
        num_heads=model.text_heads,
        hidden_dim=model.text_hidden_dim,
        intermediate_dim=model.text_intermediate_dim,
        max_sequence_length=model.max_text_tokens,
        embed_dim=model.embed_dim,
        name="text_encoder",
    )
