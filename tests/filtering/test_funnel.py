import json

import pytest
from PIL import Image

from alignpipe.filtering.funnel import FunnelReport, plot_funnel, read_funnel_json, write_funnel_json
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
