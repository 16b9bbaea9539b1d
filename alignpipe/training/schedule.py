"""ALIGN's learning-rate schedule: linear warmup, then linear decay to zero."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="alignpipe")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup 0 -> `peak` over `warmup_steps`, then linear decay to 0 at `total_steps`.

    ALIGN section 4.2: warmup to 1e-3 over 10k steps, linear decay to 0 at 1.2M
    steps. `step` counts updates already applied (Keras' `optimizer.iterations`),
    so update number `step + 1` uses

        peak * (step + 1) / warmup_steps                          if step < warmup_steps
        peak * (total_steps - step) / (total_steps - warmup_steps)  otherwise, floored at 0

    and 0 from `step = total_steps` on. The first update is not wasted at rate 0,
    the rate reaches `peak` at update `warmup_steps`, and the last update
    (`step = total_steps - 1`) is the last with a non-zero rate. A run shorter than
    its warmup (`total_steps <= warmup_steps`, e.g. a smoke test) ends mid-warmup.

    Args:
        peak: the rate at the end of warmup.
        warmup_steps: >= 0.
        total_steps: > 0.

    Example:
    ```python
    schedule = WarmupLinearDecay(peak=1e-3, warmup_steps=10_000, total_steps=1_200_000)
    optimizer = keras.optimizers.Lamb(learning_rate=schedule)
    ```
    """

    def __init__(self, peak: float, warmup_steps: int, total_steps: int):
        if warmup_steps < 0 or total_steps <= 0:
            raise ValueError(f"need warmup_steps ({warmup_steps}) >= 0 and total_steps ({total_steps}) > 0")
        self.peak = peak
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warmup = self.peak * (step + 1.0) / max(self.warmup_steps, 1)
        decay = self.peak * (self.total_steps - step) / max(self.total_steps - self.warmup_steps, 1)
        rate = ops.where(step < self.warmup_steps, warmup, decay)
        return ops.where(step < self.total_steps, rate, 0.0)

    def get_config(self) -> dict:
        return {"peak": self.peak, "warmup_steps": self.warmup_steps, "total_steps": self.total_steps}
