"""User errors raised inside Beam reach the caller as themselves, without a logged traceback."""

from __future__ import annotations

import logging

import apache_beam as beam
import pytest

from alignpipe.errors import BEAM_STEP_LOGGER, InputError, one_line, user_errors_from_beam


def read_file(name: str):
    if name == "bad.tsv":
        raise InputError(f"url list {name}: line 3 is not UTF-8")
    if name == "bug.tsv":
        raise ZeroDivisionError("a bug")
    yield name


def run_pipeline(names: list[str]) -> None:
    with user_errors_from_beam(), beam.Pipeline() as pipeline:
        _ = pipeline | beam.Create(names) | "ReadLists" >> beam.FlatMap(read_file)


def test_a_user_error_in_a_dofn_is_raised_as_itself_without_a_logged_traceback(caplog):
    with caplog.at_level(logging.ERROR), pytest.raises(InputError) as raised:
        run_pipeline(["good.tsv", "bad.tsv"])
    assert str(raised.value) == "url list bad.tsv: line 3 is not UTF-8"  # no "[while running ...]"
    assert not [r for r in caplog.records if r.exc_info]
    assert logging.getLogger(BEAM_STEP_LOGGER).filters == []  # the filter is gone afterwards


def test_a_bug_in_a_dofn_keeps_its_traceback(caplog):
    with caplog.at_level(logging.ERROR), pytest.raises(ZeroDivisionError):
        run_pipeline(["bug.tsv"])
    assert [r for r in caplog.records if r.exc_info and r.name == BEAM_STEP_LOGGER]


def test_one_line_escapes_and_caps_a_message():
    assert one_line("archive a.warc:\n bad\x00\x1b[31m record") == "archive a.warc: bad\\x00\\x1b[31m record"
    assert one_line("caf\u00e9 " + "x" * 50, limit=20) == "caf\u00e9 " + "x" * 12 + "..."
