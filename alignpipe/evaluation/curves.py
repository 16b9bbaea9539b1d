"""Training curves as a PNG: loss, temperature and learning rate against step."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # no display in containers and CI
import matplotlib.pyplot as plt  # noqa: E402


def plot_training_curves(history: list[dict]) -> bytes:
    """Three stacked panels (loss, temperature on a log axis, learning rate) vs step.

    Args:
        history: rows with `step`, `loss`, `temperature` and `learning_rate`, as
            logged by `alignpipe.training.trainer.train`.

    Returns:
        PNG bytes.
    """
    steps = [row["step"] for row in history]
    panels = (
        ("loss", "loss", "linear"),
        ("temperature", "temperature", "log"),
        ("learning_rate", "learning rate", "linear"),
    )
    figure, axes = plt.subplots(len(panels), 1, figsize=(7, 8), sharex=True)
    for axis, (key, label, scale) in zip(axes, panels, strict=True):
        axis.plot(steps, [row[key] for row in history], marker=".", linewidth=1.2)
        axis.set_ylabel(label)
        axis.set_yscale(scale)
        axis.grid(alpha=0.3)
    axes[-1].set_xlabel("step")
    figure.suptitle("ALIGN dual-encoder training")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()
