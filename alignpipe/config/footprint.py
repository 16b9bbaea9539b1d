"""What a training run needs of its slice: memory per chip and time per step, estimated.

Data parallelism: every chip holds the whole model and `train.batch_size / chips` examples.

    memory per chip = parameters x 16 B                (float32 weights, gradients, 2 optimiser slots)
                    + per-chip batch x activations     (bfloat16, kept for the backward pass)
    fits when it is <= 90% of the chip's memory        (the rest: XLA's buffers, the runtime)

    image activations per example = a(encoder) x image_size^2 x 2 B
    text activations per example  = layers x tokens x hidden x (34 + 5 x heads x tokens / hidden) B
                                    (Korthikanti et al. 2022, "Reducing Activation Recomputation in
                                    Large Transformer Models", eq. 1, 16-bit activations)

    step time = per-chip batch x 3 x forward FLOPs per example / (peak bf16 FLOP/s x 0.15 utilisation)
    forward FLOPs = EfficientNet's (Tan & Le 2019, Table 2, scaled by pixels) + 2 x text-tower
                    weights x tokens
    job timeout = steps x step time x margin + 1 h  (margin 3 on the estimate, 1.5 on a measured
                                                     `runner.train_step_seconds`)

`a(encoder)` is the sum of every layer's output size per input pixel of keras' EfficientNet B0..B7
without the top, measured at 289 px; the scaled encoders (`*_scaled`) take B0's, scaled by width x
depth. The utilisation (model FLOPs over peak) of 0.15 is an assumption for EfficientNet's
depthwise convolutions; `runner.train_step_seconds` replaces the estimate once a step was
timed. docs/training.md, "Accelerator presets", works these through for the presets.
"""

from __future__ import annotations

import math
import typing

from alignpipe.config.accelerators import ACCELERATORS, slice_of
from alignpipe.errors import ConfigError

if typing.TYPE_CHECKING:
    from alignpipe.config.schema import Config

BYTES_PER_PARAMETER = 16
ACTIVATION_BYTES = 2
USABLE_MEMORY = 0.9
ASSUMED_UTILISATION = 0.15
ESTIMATE_MARGIN = 3.0  # the step time is an estimate: the utilisation may well be off by 2x
MEASURED_MARGIN = 1.5
TIMEOUT_OVERHEAD_S = 3600

# keras.applications EfficientNet B0..B7, no top: (parameters, activation elements per input pixel).
_EFFICIENTNET_SIZE = {
    "efficientnet_b0": (4_049_571, 527),
    "efficientnet_b1": (6_575_239, 726),
    "efficientnet_b2": (7_768_569, 762),
    "efficientnet_b3": (10_783_535, 1007),
    "efficientnet_b4": (17_673_823, 1314),
    "efficientnet_b5": (28_513_527, 1800),
    "efficientnet_b6": (40_960_143, 2300),
    "efficientnet_b7": (64_097_687, 3074),
}
# Forward FLOPs at the native resolution (Tan & Le 2019, Table 2): (FLOPs, pixels per side).
_EFFICIENTNET_FLOPS = {
    "efficientnet_b0": (0.39e9, 224),
    "efficientnet_b1": (0.70e9, 240),
    "efficientnet_b2": (1.0e9, 260),
    "efficientnet_b3": (1.8e9, 300),
    "efficientnet_b4": (4.2e9, 380),
    "efficientnet_b5": (9.9e9, 456),
    "efficientnet_b6": (19e9, 528),
    "efficientnet_b7": (37e9, 600),
}


def _image_tower(cfg: Config) -> tuple[float, float, float]:
    """(parameters, activation bytes per example, forward FLOPs per example)."""
    m = cfg.model
    if m.image_encoder in _EFFICIENTNET_SIZE:
        name, width, depth = m.image_encoder, 1.0, 1.0
    else:  # the *_scaled encoders: B0 with wider (channels) and deeper (blocks) stacks
        name, width, depth = "efficientnet_b0", m.image_width_coefficient, m.image_depth_coefficient
    parameters, per_pixel = _EFFICIENTNET_SIZE[name]
    flops, side = _EFFICIENTNET_FLOPS[name]
    pixels = m.image_size**2
    return (
        parameters * width**2 * depth,
        per_pixel * width * depth * pixels * ACTIVATION_BYTES,
        flops * width**2 * depth * pixels / side**2,
    )


def _text_tower(cfg: Config) -> tuple[float, float, float]:
    """(parameters, activation bytes per example, forward FLOPs per example) of the BERT tower."""
    m = cfg.model
    h, s, layers = m.text_hidden_dim, m.max_text_tokens, m.text_layers
    per_layer = 4 * h * h + 2 * h * m.text_intermediate_dim  # attention and feed-forward weights
    parameters = (m.vocab_size + s) * h + layers * per_layer
    activations = layers * s * h * (34 + 5 * m.text_heads * s / h)
    return parameters, activations, 2 * layers * per_layer * s


def per_chip_batch(cfg: Config) -> int:
    """`train.batch_size` split over the slice's chips.

    Raises:
        ConfigError: the batch does not split evenly.
    """
    chips = cfg.runner.accelerator_chips
    if cfg.train.batch_size % chips:
        raise ConfigError(
            f"train.batch_size={cfg.train.batch_size} is not allowed: must be a multiple of the "
            f"{chips} chips of runner.accelerator={cfg.runner.accelerator}"
        )
    return cfg.train.batch_size // chips


def memory_per_chip_gb(cfg: Config) -> float:
    """Estimated memory one chip needs to train `cfg` (module docstring), in GB."""
    image, text = _image_tower(cfg), _text_tower(cfg)
    state = (image[0] + text[0]) * BYTES_PER_PARAMETER
    return (state + per_chip_batch(cfg) * (image[1] + text[1])) / 1e9


def step_seconds(cfg: Config) -> float:
    """`runner.train_step_seconds`, or the estimate of one step on the slice (module docstring)."""
    if cfg.runner.train_step_seconds:
        return cfg.runner.train_step_seconds
    flops = 3 * (_image_tower(cfg)[2] + _text_tower(cfg)[2]) * per_chip_batch(cfg)
    return flops / (ACCELERATORS[cfg.runner.accelerator].peak_tflops * 1e12 * ASSUMED_UTILISATION)


def job_timeout_s(cfg: Config) -> int:
    """The custom job's timeout: `train.steps` x the step time, with a margin, in seconds."""
    margin = MEASURED_MARGIN if cfg.runner.train_step_seconds else ESTIMATE_MARGIN
    return math.ceil(cfg.train.steps * step_seconds(cfg) * margin + TIMEOUT_OVERHEAD_S)


def check_slice(cfg: Config) -> None:
    """Raises `ConfigError` (one line: key, value, limit) unless the slice exists and a chip's
    share of the batch fits its memory."""
    r = cfg.runner
    slice_of(r.accelerator, r.accelerator_chips)
    need, chip = memory_per_chip_gb(cfg), ACCELERATORS[r.accelerator]
    limit = chip.memory_gb * USABLE_MEMORY
    if need > limit:
        raise ConfigError(
            f"runner.accelerator_chips={r.accelerator_chips} is not allowed: {per_chip_batch(cfg)} "
            f"examples per chip (train.batch_size={cfg.train.batch_size}) need about {need:.1f} GB "
            f"per chip, over the {limit:.1f} GB usable of a {r.accelerator} chip "
            f"({chip.memory_gb:g} GB); use more chips, a larger chip or a smaller batch"
        )
