"""ALIGN's image tower: EfficientNet with global average pooling."""

from __future__ import annotations

import keras
import keras_hub

# EfficientNet-B0's stacks (Tan & Le, 2019, Table 1); width and depth coefficients
# scale them, exactly as keras.applications does for B1..B7.
_B0_STACKS = {
    "stackwise_kernel_sizes": [3, 3, 5, 3, 5, 5, 3],
    "stackwise_num_repeats": [1, 2, 2, 3, 3, 4, 1],
    "stackwise_input_filters": [32, 16, 24, 40, 80, 112, 192],
    "stackwise_output_filters": [16, 24, 40, 80, 112, 192, 320],
    "stackwise_expansion_ratios": [1, 6, 6, 6, 6, 6, 6],
    "stackwise_strides": [1, 2, 2, 2, 1, 2, 1],
    "stackwise_squeeze_and_excite_ratios": [0.25] * 7,
    "stackwise_block_types": ["v1"] * 7,
    "min_depth": None,
    "use_depth_divisor_as_min_depth": True,
    "cap_round_filter_decrease": True,
    "batch_norm_epsilon": 1e-3,
}

# EfficientNetV2-B0's stacks (Tan & Le, 2021, the `efficientnetv2-b0` block strings of the
# reference implementation): fused MBConv (one 3x3 convolution instead of 1x1 expansion +
# depthwise) in the early, high-resolution stages, MBConv with squeeze-and-excitation after.
_V2_B0_STACKS = {
    "stackwise_kernel_sizes": [3, 3, 3, 3, 3, 3],
    "stackwise_num_repeats": [1, 2, 2, 3, 5, 8],
    "stackwise_input_filters": [32, 16, 32, 48, 96, 112],
    "stackwise_output_filters": [16, 32, 48, 96, 112, 192],
    "stackwise_expansion_ratios": [1, 4, 4, 4, 6, 6],
    "stackwise_strides": [1, 2, 2, 2, 1, 2],
    "stackwise_squeeze_and_excite_ratios": [0.0, 0.0, 0.0, 0.25, 0.25, 0.25],
    "stackwise_block_types": ["fused"] * 3 + ["unfused"] * 3,
    "min_depth": None,
    "use_depth_divisor_as_min_depth": True,
    "cap_round_filter_decrease": True,
    "batch_norm_epsilon": 1e-3,
}

_SCALED_STACKS = {"efficientnet_scaled": _B0_STACKS, "efficientnetv2_scaled": _V2_B0_STACKS}
ARCHITECTURES = tuple(_SCALED_STACKS) + tuple(f"efficientnet_b{i}" for i in range(8))


@keras.saving.register_keras_serializable(package="alignpipe")
class ImageEncoder(keras.Model):
    """EfficientNet, global average pooling, L2 normalisation.

    As in ALIGN (section 4.1: "EfficientNet with global pooling, without training
    the 1x1 conv layer in the classification head"), the embedding is the average
    of the last MBConv block's feature map, before EfficientNet's `top_conv`: 640
    values for B7, 320 for B0. When that size differs from `embed_dim` (e.g. a
    shrunken EfficientNet in a demo, or the paper's embedding-size ablation), a
    linear `image_projection` maps it to `embed_dim`; the paper's B7 + 640 needs none.

    `efficientnet_b0..b7` come from `keras.applications` (randomly initialised);
    `efficientnet_scaled` and `efficientnetv2_scaled` are keras-hub's
    `EfficientNetBackbone` with the stacks of EfficientNet-B0 or EfficientNetV2-B0 and
    the given width and depth coefficients (B0 = 1.0 / 1.0, B7 = 2.0 / 3.1).

    Args:
        architecture: one of `ARCHITECTURES`.
        image_size: side of the square input images.
        embed_dim: size of the output embedding.
        width_coefficient: channel multiplier, `*_scaled` only.
        depth_coefficient: block-repeat multiplier, `*_scaled` only.
        dropout: stochastic-depth rate of the last block (earlier blocks get linearly
            less), as in EfficientNet's training recipe (0.2); `*_scaled` only.

    Call:
        images: float32 `[batch, image_size, image_size, 3]`, RGB values in [0, 255].

    Returns:
        float32 `[batch, embed_dim]`, unit L2 norm.

    Example:
    ```python
    encoder = ImageEncoder("efficientnet_scaled", image_size=64, embed_dim=128,
                           width_coefficient=0.25, depth_coefficient=0.25)
    embeddings = encoder(np.zeros((2, 64, 64, 3), "float32"))  # [2, 128]
    ```
    """

    def __init__(
        self,
        architecture: str,
        image_size: int,
        embed_dim: int,
        width_coefficient: float = 1.0,
        depth_coefficient: float = 1.0,
        dropout: float = 0.2,
        **kwargs,
    ):
        # === Layers ===
        trunk = efficientnet_trunk(architecture, image_size, width_coefficient, depth_coefficient, dropout)
        pooling = keras.layers.GlobalAveragePooling2D(name="avg_pool")
        normalize = keras.layers.UnitNormalization(axis=-1, name="image_embedding", dtype="float32")

        # === Functional model ===
        images = keras.Input(shape=(image_size, image_size, 3), name="images")
        features = pooling(trunk(images))
        if features.shape[-1] != embed_dim:
            features = keras.layers.Dense(embed_dim, name="image_projection")(features)
        super().__init__(inputs=images, outputs=normalize(features), **kwargs)

        # === Config ===
        self.architecture = architecture
        self.image_size = image_size
        self.embed_dim = embed_dim
        self.width_coefficient = width_coefficient
        self.depth_coefficient = depth_coefficient
        self.dropout = dropout

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "architecture": self.architecture,
            "image_size": self.image_size,
            "embed_dim": self.embed_dim,
            "width_coefficient": self.width_coefficient,
            "depth_coefficient": self.depth_coefficient,
            "dropout": self.dropout,
        }


def efficientnet_trunk(
    architecture: str,
    image_size: int,
    width_coefficient: float = 1.0,
    depth_coefficient: float = 1.0,
    dropout: float = 0.2,
) -> keras.Model:
    """EfficientNet up to (not including) its 1x1 `top_conv` head.

    Args:
        architecture: one of `ARCHITECTURES`.
        image_size: side of the square input images.
        width_coefficient: channel multiplier, `*_scaled` only.
        depth_coefficient: block-repeat multiplier, `*_scaled` only.
        dropout: stochastic-depth rate of the last block, `*_scaled` only.

    Returns:
        A model mapping `[batch, image_size, image_size, 3]` RGB in [0, 255] to the
        last block's feature map `[batch, h, w, channels]`.

    Raises:
        ValueError: unknown architecture.
    """
    shape = (image_size, image_size, 3)
    if architecture in _SCALED_STACKS:
        images = keras.Input(shape=shape, name="images")
        backbone = keras_hub.models.EfficientNetBackbone(
            **_SCALED_STACKS[architecture],
            width_coefficient=width_coefficient,
            depth_coefficient=depth_coefficient,
            dropout=dropout,
            input_shape=shape,
            name="efficientnet_backbone",
        )
        body = keras.Model(backbone.inputs, backbone.get_layer("top_conv").input, name="efficientnet_body")
        features = body(keras.layers.Rescaling(1.0 / 255.0, name="rescale")(images))
        return keras.Model(images, features, name="efficientnet")
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown image encoder {architecture!r}; choose one of {ARCHITECTURES}")
    variant = architecture.rsplit("_", 1)[1].upper()  # "B7"
    # include_preprocessing (default) rescales [0, 255] to [0, 1] inside the model.
    base = getattr(keras.applications, f"EfficientNet{variant}")(
        weights=None, include_top=False, input_shape=shape
    )
    return keras.Model(base.inputs, base.get_layer("top_conv").input, name="efficientnet")
