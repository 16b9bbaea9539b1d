"""`alignpipe serve` given what it cannot serve: one `alignpipe: error:` line, exit status 2."""

from __future__ import annotations

import pytest

from tests.pipelines.conftest import run_cli


def one_clear_error(proc, fragment: str) -> None:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr + proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("alignpipe: error:")]
    assert len(errors) == 1 and fragment in errors[0], proc.stderr


def test_no_model_is_one_clear_error():
    one_clear_error(run_cli("serve", timeout=300), "no model: pass --model MODEL_DIR_OR_URI")


@pytest.mark.large
def test_a_folder_without_a_saved_model_or_an_index_is_one_clear_error(tmp_path, model_dir):
    one_clear_error(run_cli("serve", "--model", str(tmp_path), timeout=300), "holds no SavedModel")
    one_clear_error(
        run_cli("serve", "--model", model_dir, "--index", str(tmp_path), timeout=300),
        f"{tmp_path}: not an index (no manifest.json)",
    )
