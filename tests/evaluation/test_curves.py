"""Training curves PNG."""

from __future__ import annotations

import io

from PIL import Image

from alignpipe.evaluation.curves import plot_training_curves


def test_plot_is_a_png():
    history = [
        {"step": s, "loss": 9.0 - s / 10, "temperature": 1.0 / (1 + s), "learning_rate": 1e-3}
        for s in (1, 10, 20)
    ]
    png = plot_training_curves(history)
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size[0] > 300
