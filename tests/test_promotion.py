from alignpipe.promotion import challenger_wins


def test_first_model_wins():
    assert challenger_wins(0.0, None)


def test_strict_improvement_needed():
    assert challenger_wins(0.5, 0.4)
    assert not challenger_wins(0.4, 0.4)
    assert not challenger_wins(0.3, 0.4)


def test_lower_is_better_metrics():
    assert challenger_wins(0.3, 0.4, higher_is_better=False)
    assert not challenger_wins(0.5, 0.4, higher_is_better=False)
