"""Promotion compares the new model and the registered champion on the same sets, in one run.

Real MLflow (a local SQLite store and its registry), real models and a real evaluation set.
"""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from alignpipe.config import load_config
from alignpipe.evaluation.evaluate import evaluate
from alignpipe.model.dual_encoder import build_dual_encoder
from alignpipe.model.encoder import AlignEncoder
from alignpipe.model.tokenizer import AlignTokenizer
from alignpipe.promotion import challenger_wins, chance_level, clears_chance, promotion_score
from components.stages import evaluate_stage, register_stage
from tests.training.conftest import COLOURS, SMALL_MODEL, encode, square_image

pytestmark = pytest.mark.large

SIDES = ("left", "right")


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    root = tmp_path_factory.mktemp("promotion")
    os.makedirs(root / "set")
    entries = []
    for k, (colour, side) in enumerate((c, s) for c in COLOURS for s in SIDES):
        (root / "set" / f"{k}.png").write_bytes(encode(square_image(colour, side, (40, 40)), "png"))
        entries.append(
            {"filename": f"{k}.png", "split": "test", "sentences": [{"raw": f"a {colour} square"}]}
        )
    (root / "set" / "squares.json").write_text(json.dumps({"images": entries}))
    return load_config(
        "local",
        "tiny",
        [
            *SMALL_MODEL,
            "model.max_text_tokens=8",
            "model.vocab_size=60",
            "eval.batch_size=4",
            f"eval.retrieval_sets=squares={root / 'set' / 'squares.json'}",
            f"runner.work_dir={root / 'work'}",
            "register.margin=0.05",
        ],
    )


def _model(cfg, path, seed: int) -> str:
    keras.utils.set_random_seed(seed)
    texts = [f"a {colour} square" for colour in COLOURS] * 5
    tokenizer = AlignTokenizer.from_texts(texts, cfg.model.vocab_size, cfg.model.max_text_tokens)
    AlignEncoder(build_dual_encoder(cfg.model, cfg.train), tokenizer, cfg).save(str(path))
    return str(path)


def test_the_champion_is_scored_on_the_same_sets_in_the_same_run(cfg, tmp_path):
    first = _model(cfg, tmp_path / "first", seed=1)
    scores = evaluate_stage(cfg.to_json(), "", first)
    assert scores["champion"] is None  # nothing registered yet
    # Random models score about chance, which keeps them from being promoted (the next test):
    # the first is registered without its chance levels so that there is a champion to score.
    above_floor = {k: v for k, v in scores["challenger"].items() if not k.endswith("_chance")}
    decision = register_stage(cfg.to_json(), "", first, above_floor, scores["champion"])
    assert decision["promoted"] and decision["reason"] == "first model"

    second = _model(cfg, tmp_path / "second", seed=2)
    scores = evaluate_stage(cfg.to_json(), "", second)
    # The champion came back from the registry and was scored here, on the same set.
    assert scores["champion"]["version"] == "1"
    assert scores["champion"]["metrics"] == pytest.approx(evaluate(cfg, first).metrics, abs=1e-6)
    assert scores["challenger"] == pytest.approx(evaluate(cfg, second).metrics, abs=1e-6)
    decision = register_stage(cfg.to_json(), "", second, scores["challenger"], scores["champion"])
    challenger = promotion_score(scores["challenger"], "image_to_text_r1")
    champion = promotion_score(scores["champion"]["metrics"], "image_to_text_r1")
    assert decision["challenger_score"] == challenger and decision["champion_score"] == champion
    chance = chance_level(scores["challenger"], "image_to_text_r1")
    assert decision["chance_level"] == chance and chance > 0
    wins = challenger_wins(challenger, champion, margin=0.05)
    assert decision["promoted"] is (clears_chance(challenger, chance, 2.0) and wins)
    alias = str(MlflowClient().get_model_version_by_alias(cfg.register.model_name, "champion").version)
    assert alias == ("2" if decision["promoted"] else "1")


def test_a_collapsed_model_is_registered_but_never_promoted(cfg, tmp_path):
    collapsed = _model(cfg, tmp_path / "collapsed", seed=3)
    encoder = AlignEncoder.load(collapsed)
    encoder.model.set_weights([np.zeros_like(w) for w in encoder.model.get_weights()])
    encoder.save(collapsed)  # every image and caption embeds to the same point
    scores = evaluate_stage(cfg.to_json(), "", collapsed)
    metrics = scores["challenger"]
    assert metrics["squares/image_to_text_r1"] == pytest.approx(metrics["squares/image_to_text_r1_chance"])

    champion_before = _champion(cfg)
    decision = register_stage(cfg.to_json(), "", collapsed, metrics, scores["champion"])
    assert not decision["promoted"] and "chance level" in decision["reason"]
    assert decision["chance_level"] == pytest.approx(metrics["squares/image_to_text_r1_chance"])
    assert _champion(cfg) == champion_before  # the alias did not move, whether or not there was one


def _champion(cfg) -> str | None:
    try:
        return str(MlflowClient().get_model_version_by_alias(cfg.register.model_name, "champion").version)
    except Exception:
        return None
