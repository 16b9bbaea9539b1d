"""evaluate() on a tiny synthetic retrieval set and classification set."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from alignpipe.config import load_config
from alignpipe.errors import InputError
from alignpipe.evaluation.evaluate import EvalResult, evaluate
from alignpipe.evaluation.examples_html import write_retrieval_examples_html
from alignpipe.model.dual_encoder import build_dual_encoder
from alignpipe.model.encoder import AlignEncoder
from alignpipe.model.tokenizer import AlignTokenizer
from tests.training.conftest import COLOURS, SMALL_MODEL, encode, square_image

SMALL = [
    *SMALL_MODEL,
    "model.max_text_tokens=10",
    "model.vocab_size=80",
    "eval.batch_size=4",
]
SIDES = ("left", "right")


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> tuple[str, str]:
    """8 retrieval images x 2 captions (Karpathy JSON), 2 classes x 3 images."""
    root = tmp_path_factory.mktemp("eval")
    os.makedirs(root / "retrieval" / "images")
    entries = []
    for k, (colour, side) in enumerate((c, s) for c in COLOURS for s in SIDES):
        (root / "retrieval" / "images" / f"{k}.png").write_bytes(
            encode(square_image(colour, side, (48, 40)), "png")
        )
        sentences = [{"raw": f"a {colour} square on the {side}"}, {"raw": f"{colour} block, {side} side"}]
        entries.append(
            {"filename": f"{k}.png", "filepath": "images", "split": "test", "sentences": sentences}
        )
    entries.append({"filename": "unused.png", "split": "val", "sentences": [{"raw": "not read"}]})
    (root / "retrieval" / "dataset.json").write_text(json.dumps({"images": entries}))
    for side in SIDES:
        os.makedirs(root / "classes" / side)
        for colour in list(COLOURS)[:3]:
            (root / "classes" / side / f"{colour}.jpg").write_bytes(
                encode(square_image(colour, side, (40, 40)), "jpeg")
            )
    (root / "classes" / "classnames.txt").write_text("left\tsquare on the left\nright\tsquare on the right\n")
    return str(root / "retrieval" / "dataset.json"), str(root / "classes")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    """An untrained model directory, written through the public save API."""
    cfg = load_config("local", "tiny", SMALL)
    texts = [f"a {c} square on the {s}" for c in COLOURS for s in SIDES] * 10
    tokenizer = AlignTokenizer.from_texts(texts, cfg.model.vocab_size, cfg.model.max_text_tokens)
    path = str(tmp_path_factory.mktemp("model"))
    AlignEncoder(build_dual_encoder(cfg.model, cfg.train), tokenizer, cfg).save(path)
    return path


def config(retrieval: str = "", classification: str = "", *more: str):
    """`retrieval` is named "squares", `classification` "sides"; `more` are further overrides."""
    return load_config(
        "local",
        "tiny",
        SMALL
        + [
            f"eval.retrieval_sets={'squares=' + retrieval if retrieval else ''}",
            f"eval.classification_sets={'sides=' + classification if classification else ''}",
            *more,
        ],
    )


def test_metrics_chance_levels_and_examples(sets, model_dir):
    result = evaluate(config(*sets), model_dir, num_examples=3)
    assert isinstance(result, EvalResult)
    m = {key.partition("/")[2]: value for key, value in result.metrics.items()}
    assert {key.partition("/")[0] for key in result.metrics} == {"squares", "sides"}
    for name in (
        "image_to_text_r1",
        "image_to_text_r5",
        "image_to_text_r10",
        "text_to_image_r1",
        "text_to_image_r5",
        "text_to_image_r10",
        "zero_shot_top1",
    ):
        assert 0.0 <= m[name] <= 1.0, name
    assert m["image_to_text_r1_chance"] == pytest.approx(2 / 16)
    assert m["text_to_image_r1_chance"] == pytest.approx(1 / 8)
    assert m["text_to_image_r10"] == 1.0  # only 8 images
    assert m["zero_shot_top1_chance"] == pytest.approx(1 / 2)
    assert result.metrics["sides/zero_shot_top1_chance"] == pytest.approx(1 / 2)
    assert result.counts == {
        "squares/images": 8,
        "squares/captions": 16,
        "sides/images": 6,
        "sides/classes": 2,
    }
    assert list(result.examples) == ["squares"]
    first = result.examples["squares"]["text_to_image"][0]
    assert first["query"] == "a red square on the left" and first["answer"].endswith("images/0.png")
    assert len(first["results"]) == 5 and {"image", "score", "correct"} <= set(first["results"][0])
    scores = [r["score"] for r in first["results"]]
    assert scores == sorted(scores, reverse=True)
    assert len(result.examples["squares"]["image_to_text"]) == 3
    assert result.examples["squares"]["image_to_text"][0]["answer"] == [
        "a red square on the left",
        "red block, left side",
    ]


def test_retrieval_only_leaves_zero_shot_out(sets, model_dir):
    metrics = evaluate(config(sets[0]), model_dir).metrics
    assert "sides/zero_shot_top1" not in metrics and "squares/image_to_text_r1" in metrics


def test_examples_html_embeds_the_images(sets, model_dir, tmp_path):
    result = evaluate(config(*sets), model_dir, num_examples=2)
    path = str(tmp_path / "examples.html")
    write_retrieval_examples_html(result, path)
    with open(path, encoding="utf-8") as f:
        page = f.read()
    assert page.count("data:image/png;base64,") == 2 * 5 + 2
    assert "a red square on the left" in page and "squares/image_to_text_r1" in page


def test_nothing_configured_is_an_input_error(model_dir):
    with pytest.raises(InputError, match="nothing to evaluate"):
        evaluate(config(), model_dir)


def test_missing_model_dir_is_an_input_error(sets, tmp_path):
    with pytest.raises(InputError, match="has no model.keras"):
        evaluate(config(*sets), str(tmp_path))


def test_undecodable_image_is_named(sets, model_dir, tmp_path):
    broken = tmp_path / "broken"
    os.makedirs(broken / "x")
    (broken / "x" / "a.png").write_bytes(b"not an image")
    (broken / "classnames.txt").write_text("x\tthing\n")
    with pytest.raises(InputError, match=r"a\.png' cannot be decoded"):
        evaluate(config("", str(broken)), model_dir)


def test_embeddings_are_unit_norm(model_dir):
    encoder = AlignEncoder.load(model_dir)
    pixels = np.random.default_rng(0).integers(0, 256, size=(5, 40, 48, 3), dtype=np.uint8)
    embeddings = encoder.embed_images(pixels, batch_size=2)
    assert embeddings.shape == (5, 16)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)
    assert encoder.embed_texts([]).shape == (0, 16)


@pytest.fixture(scope="module")
def imagenet_style(tmp_path_factory) -> str:
    """Two WordNet-id class folders and no classnames.txt: CLIP's names and templates apply."""
    root = tmp_path_factory.mktemp("imagenet") / "val"
    for wnid, colour in (("n01440764", "red"), ("n01443537", "blue")):
        os.makedirs(root / wnid)
        for side in SIDES:
            (root / wnid / f"{side}.JPEG").write_bytes(encode(square_image(colour, side, (40, 40)), "jpeg"))
    return str(root)


def test_several_named_sets_score_as_each_alone(sets, model_dir, imagenet_style, tmp_path):
    """Every set is scored on its own, under its own name; a second set changes no other's."""
    retrieval, classification = sets
    subset = json.loads(open(retrieval).read())
    subset["images"] = subset["images"][:4]
    (tmp_path / "images").symlink_to(os.path.join(os.path.dirname(retrieval), "images"))
    (tmp_path / "dataset_first4.json").write_text(json.dumps(subset))
    both = config(
        retrieval,
        classification,
        f"eval.retrieval_sets=squares={retrieval},{tmp_path / 'dataset_first4.json'}",
        f"eval.classification_sets=sides={classification},imagenet={imagenet_style}",
    )
    metrics = evaluate(both, model_dir).metrics
    assert {key.partition("/")[0] for key in metrics} == {"squares", "first4", "sides", "imagenet"}
    alone = {
        **evaluate(config(retrieval, classification), model_dir).metrics,
        **{
            key.replace("squares/", "first4/"): value
            for key, value in evaluate(
                config(str(tmp_path / "dataset_first4.json")), model_dir
            ).metrics.items()
        },
    }
    for key, value in alone.items():
        assert metrics[key] == pytest.approx(value, abs=1e-6), key
    assert metrics["first4/image_to_text_r1_chance"] == pytest.approx(2 / 8)
    assert metrics["imagenet/zero_shot_top1_chance"] == pytest.approx(1 / 2)
