"""Optimisers for the dual encoder, as configured by `train.*`."""

from __future__ import annotations

import dataclasses

import keras

from alignpipe.config import TrainConfig
from alignpipe.model.dual_encoder import DualEncoder
from alignpipe.training.schedule import WarmupLinearDecay


@dataclasses.dataclass
class Optimizers:
    """The two optimisers of one run and the variables each one updates.

    Attributes:
        weights: `train.optimizer` (LAMB or AdamW) for every tower variable.
        weight_variables: the tower variables, in `model.trainable_variables` order.
        temperature: Adam for the temperature parameter alone. LAMB scales each
            variable's step by the ratio of its norm to its update's norm, so a scalar
            initialised at 0 (the log-parametrised temperature) would barely move and
            `train.temperature_lr_multiplier` would cancel out; Adam keeps the
            multiplier a true learning-rate multiplier (see `DualEncoder`). With AdamW
            the split changes nothing: the temperature never gets weight decay.
        temperature_variable: `DualEncoder.temperature_parameter`.
        schedule: the learning-rate schedule both follow.
    """

    weights: keras.optimizers.Optimizer
    weight_variables: list
    temperature: keras.optimizers.Optimizer
    temperature_variable: keras.Variable
    schedule: WarmupLinearDecay

    def apply(self, weight_gradients: list, temperature_gradient) -> None:
        """Applies one step (inside a replica context, gradients are all-reduced by SUM)."""
        self.weights.apply(weight_gradients, self.weight_variables)
        self.temperature.apply([temperature_gradient], [self.temperature_variable])


def make_optimizers(train: TrainConfig, model: DualEncoder) -> Optimizers:
    """Builds (and creates the slots of) the optimisers; call under the strategy's scope.

    Weight decay (`train.weight_decay`, decoupled) skips biases (of any rank: attention
    biases are `[heads, head_dim]`), every other variable of rank <= 1 (BatchNorm and
    LayerNorm scales and offsets) and the temperature, as in COYO-ALIGN and LAMB's
    BERT recipe.
    """
    schedule = WarmupLinearDecay(train.learning_rate, train.warmup_steps, train.steps)
    if train.optimizer == "lamb":
        weights = keras.optimizers.Lamb(learning_rate=schedule, weight_decay=train.weight_decay)
    elif train.optimizer == "adamw":
        weights = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=train.weight_decay)
    else:
        raise ValueError(f"unknown optimizer {train.optimizer!r}")
    temperature_parameter = model.temperature_parameter
    weight_variables = [v for v in model.trainable_variables if v is not temperature_parameter]
    no_decay = [v for v in weight_variables if len(v.shape) <= 1 or v.name == "bias"]
    weights.exclude_from_weight_decay(var_list=no_decay)
    weights.build(weight_variables)
    temperature = keras.optimizers.Adam(learning_rate=schedule)
    temperature.build([temperature_parameter])
    return Optimizers(weights, weight_variables, temperature, temperature_parameter, schedule)
