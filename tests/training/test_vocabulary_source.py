"""Where train() takes its WordPiece vocabulary: checkpoints, else the filter's vocab.txt, else the texts."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from alignpipe.config import load_config
from alignpipe.errors import InputError
from alignpipe.model.tokenizer import RESERVED_TOKENS
from alignpipe.training.trainer import train
from tests.training.conftest import SMALL_RUN as SMALL

# No learner would give this: whole caption words, no "##" pieces, and a marker.
FILTER_VOCABULARY = [*RESERVED_TOKENS, "a", "square", "on", "the", "left", "right", "red", "from-the-filter"]


def _write_vocabulary(folder: str, tokens: list[str]) -> None:
    Path(folder, "vocab.txt").write_text("".join(token + "\n" for token in tokens), encoding="utf-8")


def _train(cfg, data_dir: str, model_dir: Path, caplog) -> tuple[list[str], list[str]]:
    """The model folder's vocabulary, and the log lines that say where it came from."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="alignpipe"):
        train(cfg, data_dir, str(model_dir))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("WordPiece vocabulary")]
    return (model_dir / "vocab.txt").read_text(encoding="utf-8").splitlines(), lines


@pytest.mark.large
def test_checkpoints_then_the_filters_vocabulary_then_the_texts(shards_dir, tmp_path, caplog):
    cfg = load_config("local", "tiny", SMALL)

    # Shards without the filter's vocab.txt: learnt from their alt-texts, as before.
    learnt, lines = _train(cfg, shards_dir, tmp_path / "model", caplog)
    assert "from-the-filter" not in learnt and any(t.startswith("##") for t in learnt)
    source = f"learnt from the alt-texts (no vocab.txt in {shards_dir})"
    assert lines == [f"WordPiece vocabulary: {len(learnt)} tokens, {source}"]

    # A rerun resumes from its checkpoints (here: the last step, so it only rewrites the model
    # folder) with their vocabulary, whatever the data folder holds now.
    _write_vocabulary(shards_dir, FILTER_VOCABULARY)
    resumed, lines = _train(cfg, shards_dir, tmp_path / "model", caplog)
    assert resumed == learnt
    assert lines == [
        f"WordPiece vocabulary: {len(learnt)} tokens, the checkpoint folder {tmp_path}/model-checkpoints"
    ]

    # A new run takes the filter's vocab.txt as it is.
    used, lines = _train(cfg, shards_dir, tmp_path / "new-model", caplog)
    assert used == FILTER_VOCABULARY
    assert lines == [f"WordPiece vocabulary: 13 tokens, the filter's {shards_dir}/vocab.txt"]


def test_a_vocabulary_larger_than_the_model_is_an_input_error(shards_dir, tmp_path):
    _write_vocabulary(shards_dir, [*RESERVED_TOKENS, *(f"token{i}" for i in range(80))])
    with pytest.raises(InputError, match=r"vocab.txt has 85 tokens, more than model.vocab_size=80"):
        train(load_config("local", "tiny", SMALL), shards_dir, str(tmp_path / "model"))
    assert not (tmp_path / "model").exists()


def test_a_vocabulary_without_the_reserved_tokens_is_an_input_error(shards_dir, tmp_path):
    _write_vocabulary(shards_dir, ["a", "red", "square"])
    with pytest.raises(
        InputError, match=r"vocab.txt: not a WordPiece vocabulary \(vocabulary must start with"
    ):
        train(load_config("local", "tiny", SMALL), shards_dir, str(tmp_path / "model"))
