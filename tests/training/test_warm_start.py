"""Warm starts (`train.init_from`): another model's weights and vocabulary, a new optimiser."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from alignpipe.config import load_config
from alignpipe.errors import ConfigError, InputError
from alignpipe.model.encoder import AlignEncoder
from alignpipe.model.tokenizer import RESERVED_TOKENS
from alignpipe.training.trainer import train
from tests.training.conftest import SMALL_RUN as SMALL
from tests.training.conftest import write_shards

# one worker trains the first model once, for both tests
pytestmark = [pytest.mark.large, pytest.mark.xdist_group("warm-start")]


@pytest.fixture(scope="module")
def first(tmp_path_factory) -> Path:
    """A model trained on the pairs `shards_dir` holds (the same generator and seed)."""
    root = tmp_path_factory.mktemp("warm-start")
    write_shards(str(root / "pairs"), num_pairs=48)
    train(load_config("local", "tiny", SMALL), str(root / "pairs"), str(root / "first"))
    return root / "first"


def _weights(model_dir: Path) -> list[np.ndarray]:
    """The trainable weights (batch-norm statistics move with every forward pass in training)."""
    return [w.numpy() for w in AlignEncoder.load(str(model_dir)).model.trainable_weights]


def test_starts_from_the_models_weights_with_its_vocabulary(first, shards_dir, tmp_path):
    # The data folder now brings another vocabulary: a warm start keeps the first model's, whose
    # token ids its text tower was trained on.
    Path(shards_dir, "vocab.txt").write_text("".join(t + "\n" for t in [*RESERVED_TOKENS, "red"]))

    # With a vanishing learning rate the warm-started model is the first one, weight for weight
    still = load_config("local", "tiny", [*SMALL, "train.learning_rate=1e-12", "train.seed=7"])
    # (batch-norm statistics aside).
    result = train(still, shards_dir, str(tmp_path / "still"), init_dir=str(first))
    for before, after in zip(_weights(first), _weights(tmp_path / "still"), strict=True):
        np.testing.assert_allclose(before, after, rtol=0, atol=1e-6)
    assert (tmp_path / "still" / "vocab.txt").read_text() == (first / "vocab.txt").read_text()
    assert result.resumed_from_step == 0

    # Training on from there moves the weights away from both the first model and a fresh start.
    moved = tmp_path / "moved"
    train(load_config("local", "tiny", SMALL), shards_dir, str(moved), init_dir=str(first))
    fresh = tmp_path / "fresh"
    train(load_config("local", "tiny", [*SMALL, "train.seed=1"]), shards_dir, str(fresh))
    kernel = lambda d: _weights(d)[-2]  # noqa: E731 (the last projection's kernel)
    assert not np.array_equal(kernel(moved), kernel(first))
    assert np.abs(kernel(moved) - kernel(first)).max() < np.abs(kernel(fresh) - kernel(first)).max()


def test_a_model_of_another_architecture_or_no_model_is_refused(first, shards_dir, tmp_path):
    wider = load_config("local", "tiny", [*SMALL, "model.embed_dim=32"])
    with pytest.raises(ConfigError, match=r"model.embed_dim=16 there, 32 here"):
        train(wider, shards_dir, str(tmp_path / "wider"), init_dir=str(first))
    with pytest.raises(InputError, match="not a model folder"):
        train(load_config("local", "tiny", SMALL), shards_dir, str(tmp_path / "x"), init_dir=str(tmp_path))
