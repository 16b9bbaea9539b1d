import json

import pytest
from PIL import Image

from alignpipe.filtering.funnel import (
    FunnelReport,
    funnel_markdown,
    funnel_warnings,
    largest_drop,
    plot_funnel,
    read_funnel_json,
    write_funnel_json,
)
from alignpipe.filtering.rules import REASONS


def _report() -> FunnelReport:
    return FunnelReport.from_outcomes(100, {"kept": 70, "image_too_small": 20, "text_rare_token": 10})


def test_from_outcomes_fills_every_reason_in_order():
    report = _report()
    assert list(report.dropped) == list(REASONS)
    assert report.dropped["image_too_small"] == 20 and report.dropped["image_unsafe"] == 0
    assert report.kept_pairs == 70


def test_counts_must_add_up():
    with pytest.raises(ValueError, match="does not add up"):
        FunnelReport.from_outcomes(100, {"kept": 70, "image_too_small": 20})
    with pytest.raises(ValueError, match="unknown filter outcomes"):
        FunnelReport.from_outcomes(10, {"kept": 9, "too_blue": 1})
    with pytest.raises(ValueError, match="are not"):
        FunnelReport(1, 1, {"image_too_small": 0})


def test_json_round_trip_keeps_reason_order(tmp_path):
    path = str(tmp_path / "funnel.json")
    write_funnel_json(_report(), path)
    raw = json.loads(open(path).read())
    assert list(raw["dropped"]) == list(REASONS)
    assert raw["input_pairs"] == 100 and raw["kept_pairs"] == 70
    assert read_funnel_json(path) == _report()


@pytest.mark.parametrize("report", [_report(), FunnelReport.from_outcomes(0, {})])
def test_plot_writes_a_png(tmp_path, report):
    path = tmp_path / "funnel.png"
    plot_funnel(report, str(path))
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 600 and image.height > 400


def _dropped(**counts: int) -> dict[str, int]:
    return {reason: counts.get(reason, 0) for reason in REASONS}


def test_a_rule_dropping_most_of_what_reaches_it_is_warned_about():
    # 100 in: image_too_small drops 40 of 100 (no), text_rare_token 31 of the 60 left (yes).
    dropped = _dropped(image_too_small=40, text_rare_token=31)
    (warning,) = funnel_warnings(100, 29, dropped)
    assert warning.startswith("filter rule text_rare_token dropped 31 of the 60 pairs that reached it (52%")
    assert "31% of all 100" in warning
    assert "filter.rare_token_vocab_size" in warning and "filter.rare_token_min_word_share" in warning


def test_dropping_exactly_half_is_not_warned_about():
    assert funnel_warnings(100, 50, _dropped(text_too_short=50)) == ()
    (warning,) = funnel_warnings(100, 49, _dropped(text_too_short=51))
    assert "text_too_short dropped 51 of the 100" in warning and "lower filter.min_alt_words" in warning


def test_fewer_kept_pairs_than_a_batch_is_warned_about():
    dropped = _dropped(image_too_small=30, image_too_many_alts=45)
    assert funnel_warnings(200, 125, dropped, batch_size=125) == ()
    (warning,) = funnel_warnings(200, 125, dropped, batch_size=128)
    assert "kept 125 of 200 pairs, fewer than one training batch (train.batch_size=128)" in warning
    assert "image_too_many_alts (45 pairs): raise filter.max_alts_per_image" in warning
    (nothing_dropped,) = funnel_warnings(3, 3, _dropped(), batch_size=4)
    assert nothing_dropped.endswith("lower train.batch_size, add data")
    assert largest_drop(dropped) == ("image_too_many_alts", 45)


def test_warnings_travel_in_the_report_json_and_markdown(tmp_path):
    report = FunnelReport.from_outcomes(10, {"kept": 2, "text_too_short": 8}, batch_size=4)
    assert len(report.warnings) == 2 and report.warnings[0].startswith("filter rule text_too_short")
    path = str(tmp_path / "funnel.json")
    write_funnel_json(report, path)
    assert json.loads(open(path).read())["warnings"] == list(report.warnings)
    assert read_funnel_json(path) == report
    assert f"**Warning:** {report.warnings[1]}" in funnel_markdown(report)
    assert _report().warnings == () and "Warning" not in funnel_markdown(_report())


def test_a_funnel_json_without_warnings_still_reads(tmp_path):
    path = tmp_path / "funnel.json"
    raw = _report().to_dict()
    del raw["warnings"]
    path.write_text(json.dumps(raw))
    assert read_funnel_json(str(path)) == _report()
