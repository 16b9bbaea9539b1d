"""Input mistakes end in one clear message and exit status 2, never a traceback."""

from __future__ import annotations

import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.pipelines.conftest import run_cli


def _one_clear_error(proc, *fragments: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("alignpipe: error:")]
    assert len(errors) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in errors[0]


@pytest.mark.parametrize(
    ("override", "fragments"),
    [
        ("train.stepz=3", ("unknown config key", "train.stepz")),
        ("train.steps=many", ("train.steps", "not a valid int")),
        ("train.optimizer=sgd", ("train.optimizer", "lamb")),
        ("filter.max_aspect_ratio=0.5", ("filter.max_aspect_ratio", "> 1")),
        ("scrape.seed_urls=ftp://example.org/", ("scrape.seed_urls", "http")),
    ],
)
def test_bad_config_key_or_value(override, fragments, tmp_path):
    _one_clear_error(run_cli("run", "--work-dir", str(tmp_path), "--set", override), *fragments)


def test_missing_input_folder(tmp_path):
    missing = str(tmp_path / "nowhere")
    _one_clear_error(
        run_cli("filter", "--in", missing, "--out", str(tmp_path / "out"), "--work-dir", str(tmp_path)),
        missing,
        "does not exist",
    )


def test_unreachable_seed_url(tmp_path):
    from tests.pipelines.conftest import free_port

    seed = f"http://127.0.0.1:{free_port()}/"
    proc = run_cli(
        "run",
        "--work-dir",
        str(tmp_path),
        "--set",
        f"scrape.seed_urls={seed}",
        "--set",
        f"eval.retrieval_sets=r={tmp_path}/r.json",
    )
    _one_clear_error(proc, seed, "unreachable")
    proc = run_cli("scrape", "--seed", seed, "--out", str(tmp_path / "raw"), "--work-dir", str(tmp_path))
    _one_clear_error(proc, seed, "unreachable")


def _write_input(path, content) -> None:
    if isinstance(content, dict):
        pq.write_table(pa.table(content), path)
    else:
        path.write_bytes(content)


NOISE = bytes(random.Random(7).randrange(256) for _ in range(3000))  # binary, nothing like a WARC


BAD_INPUTS = [  # (flag, file name, content: bytes or parquet columns, what the error says)
    ("--url-list", "no-url.parquet", {"a": [1], "b": ["x"]}, "no URL column; columns found: ['a', 'b']"),
    ("--url-list", "corrupt.parquet", b"PAR1" + b"\x00\xff" * 40, "not a readable parquet file"),
    ("--url-list", "empty.parquet", b"", "not a readable parquet file"),
    ("--url-list", "empty.tsv", b"", "no rows (an empty file, or a header only)"),
    ("--url-list", "list.txt", b"url\nhttp://a.example/\n", "unknown format"),
    ("--warc", "noise.warc", NOISE, "record 0 (byte offset 0): no WARC or ARC header"),
]


@pytest.mark.large
@pytest.mark.parametrize(("flag", "name", "content", "fragment"), BAD_INPUTS, ids=[c[1] for c in BAD_INPUTS])
def test_bad_scrape_inputs_end_in_one_line_without_binary(tmp_path, flag, name, content, fragment):
    path = tmp_path / name
    _write_input(path, content)
    out = tmp_path / "out"
    proc = run_cli("scrape", flag, str(path), "--out", str(out), "--work-dir", str(tmp_path))
    _one_clear_error(proc, str(path), fragment)
    line = next(line for line in proc.stderr.splitlines() if line.startswith("alignpipe: error:"))
    assert line.isascii() and line.isprintable() and len(line) < 400 + len(str(path)), line
    assert "[while running" not in line
    assert not (out / "scrape_report.json").exists()


def test_docker_runner_without_an_engine(tmp_path):
    # DOCKER_HOST names a socket nothing listens on: the run stops before writing anything
    proc = run_cli(
        "run", "--runner", "docker", "--work-dir", str(tmp_path / "work"),
        env={"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"},
    )  # fmt: skip
    _one_clear_error(proc, "--runner docker", "no Docker engine answers")
    assert not (tmp_path / "work" / "demo").exists()


def test_help_lists_every_command():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for command in (
        "run",
        "compile",
        "demo-web",
        "scrape",
        "filter",
        "train",
        "evaluate",
        "register",
        "index",
    ):
        assert command in proc.stdout
        assert run_cli(command, "--help").returncode == 0
