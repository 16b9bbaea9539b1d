"""Optimiser construction: choice, weight-decay exclusions, the temperature's own Adam."""

from __future__ import annotations

import keras
import pytest

from alignpipe.config import load_config
from alignpipe.model.dual_encoder import build_dual_encoder
from alignpipe.training.optimizer import make_optimizers
from tests.training.conftest import SMALL_MODEL

SMALL = [
    *SMALL_MODEL,
    "model.vocab_size=50",
]


@pytest.mark.parametrize(
    ("name", "kind"), [("lamb", keras.optimizers.Lamb), ("adamw", keras.optimizers.AdamW)]
)
def test_configured_optimizer_and_weight_decay_exclusions(name, kind):
    cfg = load_config("local", "tiny", SMALL + [f"train.optimizer={name}", "train.weight_decay=0.01"])
    model = build_dual_encoder(cfg.model, cfg.train)
    optimizers = make_optimizers(cfg.train, model)
    assert isinstance(optimizers.weights, kind)
    assert type(optimizers.temperature) is keras.optimizers.Adam
    assert optimizers.temperature_variable is model.temperature_parameter
    assert all(v is not model.temperature_parameter for v in optimizers.weight_variables)
    assert len(optimizers.weight_variables) + 1 == len(model.trainable_variables)
    decayed = {v.path for v in optimizers.weight_variables if optimizers.weights._use_weight_decay(v)}
    assert any(path.endswith("kernel") for path in decayed)
    assert any("embeddings" in path for path in decayed)
    assert not any(path.endswith(("bias", "gamma", "beta")) for path in decayed)
    assert optimizers.weights.weight_decay == pytest.approx(0.01)
