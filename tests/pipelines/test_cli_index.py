"""`alignpipe index`: a corpus index from a model folder and kept pairs, logged to MLflow."""

from __future__ import annotations

import json

from mlflow.tracking import MlflowClient

from alignpipe.search.corpus_index import CorpusIndex
from tests.pipelines.conftest import run_cli
from tests.pipelines.test_cli_errors import _one_clear_error
from tests.search.conftest import SMALL, save_model, square_pairs, write_pair_shard


def _settings(tmp_path) -> list[str]:
    return ["--work-dir", str(tmp_path / "work"), *(a for s in SMALL for a in ("--set", s))]


def test_index_command_writes_the_index_and_logs_its_model(tmp_path):
    model = save_model(str(tmp_path / "model"), seed=0)
    write_pair_shard(str(tmp_path / "kept"), 0, square_pairs([40, 41, 42, 43]))
    out = str(tmp_path / "index")
    args = ["index", "--model", model, "--data", str(tmp_path / "kept"), "--out", out, *_settings(tmp_path)]
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert (report["items"], report["texts"], report["images_embedded"]) == (4, 8, 4)
    assert len(CorpusIndex.load(out)) == 4
    client = MlflowClient(f"sqlite:///{tmp_path}/work/mlflow.db")
    (run,) = client.search_runs(
        [client.get_experiment_by_name("alignpipe").experiment_id], "tags.`alignpipe.stage` = 'index'"
    )
    assert run.data.params["index.model_uri"] == model and run.data.params["index.uri"] == out
    assert run.data.metrics["items"] == 4 and run.data.metrics["images_embedded"] == 4
    again = json.loads(run_cli(*args).stdout)  # the same pairs again: nothing to embed
    assert (again["images_embedded"], again["texts_embedded"], again["items_kept"]) == (0, 0, 4)


def test_index_command_bad_folders_are_one_clear_error(tmp_path):
    write_pair_shard(str(tmp_path / "kept"), 0, square_pairs([40], texts_per_image=1))
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    missing = str(tmp_path / "nowhere")
    settings = _settings(tmp_path)
    kept, out = str(tmp_path / "kept"), str(tmp_path / "index")
    proc = run_cli("index", "--model", missing, "--data", kept, "--out", out, *settings)
    _one_clear_error(proc, missing, "does not exist")
    proc = run_cli("index", "--model", str(tmp_path / "foreign"), "--data", kept, "--out", out, *settings)
    _one_clear_error(proc, "foreign", "holds no SavedModel")
    proc = run_cli("index", "--model", str(tmp_path), "--data", missing, "--out", out, *settings)
    _one_clear_error(proc, missing, "does not exist")
