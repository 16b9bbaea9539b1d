import pytest

from alignpipe.promotion import challenger_wins, chance_level, clears_chance, promotion_score


def test_first_model_wins():
    assert challenger_wins(0.0, None)


def test_strict_improvement_needed():
    assert challenger_wins(0.5, 0.4)
    assert not challenger_wins(0.4, 0.4)
    assert not challenger_wins(0.3, 0.4)


def test_lower_is_better_metrics():
    assert challenger_wins(0.3, 0.4, higher_is_better=False)
    assert not challenger_wins(0.5, 0.4, higher_is_better=False)


def test_margin_must_be_exceeded():
    assert not challenger_wins(0.45, 0.4, margin=0.05)
    assert challenger_wins(0.46, 0.4, margin=0.05)
    assert not challenger_wins(0.36, 0.4, higher_is_better=False, margin=0.05)
    assert challenger_wins(0.34, 0.4, higher_is_better=False, margin=0.05)


def test_score_of_one_set_or_the_mean_over_sets():
    metrics = {
        "coco/image_to_text_r1": 0.2,
        "flickr30k/image_to_text_r1": 0.6,
        "flickr30k/image_to_text_r1_chance": 0.001,
        "imagenet/zero_shot_top1": 0.3,
    }
    assert promotion_score(metrics, "flickr30k/image_to_text_r1") == 0.6
    assert promotion_score(metrics, "image_to_text_r1") == pytest.approx(0.4)
    assert promotion_score(metrics, "zero_shot_top1") == 0.3
    assert promotion_score(metrics, "text_to_image_r1") is None
    assert promotion_score(metrics, "coco/zero_shot_top1") is None


def test_chance_level_of_a_set_or_the_mean_over_sets():
    metrics = {
        "a/image_to_text_r1": 0.5,
        "a/image_to_text_r1_chance": 0.01,
        "b/image_to_text_r1": 0.3,
        "b/image_to_text_r1_chance": 0.03,
    }
    assert chance_level(metrics, "image_to_text_r1") == pytest.approx(0.02)
    assert chance_level(metrics, "b/image_to_text_r1") == 0.03
    assert chance_level(metrics, "zero_shot_top1") is None


def test_a_score_at_or_near_chance_never_clears():
    assert not clears_chance(0.01, 0.01, 2.0)  # a collapsed model
    assert not clears_chance(0.02, 0.01, 2.0)
    assert clears_chance(0.021, 0.01, 2.0)
    assert clears_chance(0.0, None, 2.0)  # no chance level reported: nothing to check
