"""Named evaluation sets: class folders, ImageNet-style folders with CLIP's names and templates."""

from __future__ import annotations

import pytest

from alignpipe.config import load_config
from alignpipe.data.eval_sets import (
    classification_sets,
    evaluation_images,
    load_classification_set,
    retrieval_sets,
)
from alignpipe.errors import ConfigError, InputError


def _folder(root, classes: dict[str, int]):
    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            (root / name / f"{i}.jpg").write_bytes(b"")  # loading lists files; nothing decodes them
    return root


def test_imagenet_style_folder_takes_clips_names_and_80_templates(tmp_path):
    folder = _folder(tmp_path / "val", {"n01443537": 2, "n01440764": 3, "n15075141": 1})
    dataset = load_classification_set(str(folder))
    # ImageNet's index order (sorted WordNet ids), CLIP's names for them.
    assert dataset.class_names == ("tench", "goldfish", "toilet paper")
    assert dataset.labels == (0, 0, 0, 1, 1, 2)
    assert len(dataset.templates) == 80 and all("{}" in t for t in dataset.templates)
    assert dataset.templates[0] == "a bad photo of a {}."


def test_templates_file_overrides_the_templates(tmp_path):
    folder = _folder(tmp_path / "val", {"n01440764": 1})
    (folder / "templates.txt").write_text("itap of a {}.\n\na {} in the wild.\n")
    assert load_classification_set(str(folder)).templates == ("itap of a {}.", "a {} in the wild.")
    (folder / "templates.txt").write_text("no placeholder\n")
    with pytest.raises(InputError, match="templates.txt: template 'no placeholder'"):
        load_classification_set(str(folder))


def test_classnames_file_wins_and_has_no_templates(tmp_path):
    folder = _folder(tmp_path / "shapes", {"sq": 1, "ci": 2})
    (folder / "classnames.txt").write_text("ci\tcircle\nsq\tsquare\n")
    dataset = load_classification_set(str(folder))
    assert dataset.class_names == ("circle", "square") and dataset.templates == ()


@pytest.mark.parametrize(
    ("classes", "message"),
    [
        ({"cats": 1}, "no classnames.txt and no ImageNet-style class folders"),
        ({"n01440764": 1, "n99999999": 1}, "'n99999999' is not an ImageNet-1k WordNet id"),
    ],
)
def test_folder_without_class_names_is_one_clear_error(tmp_path, classes, message):
    with pytest.raises(InputError, match=message):
        load_classification_set(str(_folder(tmp_path / "set", classes)))


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(InputError, match="'.*nowhere' does not exist"):
        load_classification_set(str(tmp_path / "nowhere"))


def test_sets_are_named_and_names_are_unique(tmp_path):
    cfg = load_config(
        "local",
        "tiny",
        [
            "eval.retrieval_sets=f30k=/d/flickr.json,/d/coco/dataset_coco.json",
            "eval.classification_sets=/d/imagenet/val/",
        ],
    )
    assert retrieval_sets(cfg.eval) == [("f30k", "/d/flickr.json"), ("coco", "/d/coco/dataset_coco.json")]
    assert classification_sets(cfg.eval) == [("val", "/d/imagenet/val/")]
    with pytest.raises(ConfigError, match="a set whose name 'coco' no other set has"):
        load_config("local", "tiny", ["eval.retrieval_sets=/a/coco.json", "eval.classification_sets=coco=/b"])
    with pytest.raises(ConfigError, match="eval.retrieval_sets='bad name=/x.json'"):
        load_config("local", "tiny", ["eval.retrieval_sets=bad name=/x.json"])


def test_every_image_of_every_set_is_listed_under_its_name(tmp_path):
    folder = _folder(tmp_path / "val", {"n01440764": 2})
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "k.json").write_text(
        '{"images": [{"filename": "a.png", "split": "test", "sentences": [{"raw": "x"}]},'
        ' {"filename": "b.png", "split": "train", "sentences": [{"raw": "y"}]}]}'
    )
    cfg = load_config(
        "local",
        "tiny",
        [
            f"eval.retrieval_sets=karpathy={tmp_path / 'r' / 'k.json'}",
            f"eval.classification_sets=inet={folder}",
        ],
    )
    assert evaluation_images(cfg.eval) == [
        ("inet", str(folder / "n01440764" / "0.jpg")),
        ("inet", str(folder / "n01440764" / "1.jpg")),
        ("karpathy", str(tmp_path / "r" / "a.png")),
        ("karpathy", str(tmp_path / "r" / "b.png")),
    ]
