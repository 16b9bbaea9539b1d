"""The whole ALIGN DAG through kfp's local runner, checked through what MLflow holds."""

from __future__ import annotations

import json
import os

import pytest
from mlflow.tracking import MlflowClient

from components.tracking import PIPELINE_JOB_TAG, ROLE_TAG, STAGE_TAG
from tests.pipelines.conftest import model_dir_of, run_cli
from tests.serving import test_search_page

# One worker runs the pipeline (a session fixture) for every test that reads it.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]

browser = test_search_page.browser  # the fixture: headless Chromium

STAGES = {"scrape", "filter", "train", "evaluate", "register", "index"}


@pytest.fixture(scope="module")
def runs(pipeline_run):
    client = MlflowClient(pipeline_run["tracking_uri"])
    experiment = client.get_experiment_by_name("alignpipe")
    parents = client.search_runs([experiment.experiment_id], f"tags.`{ROLE_TAG}` = 'pipeline'")
    assert len(parents) == 1
    parent = parents[0]
    children = client.search_runs(
        [experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
    )
    return client, parent, {c.data.tags[STAGE_TAG]: c for c in children}


def test_parent_run_finished_with_one_nested_run_per_stage(runs):
    client, parent, stages = runs
    assert parent.info.status == "FINISHED"
    assert parent.data.tags[PIPELINE_JOB_TAG].startswith("align-")
    assert set(stages) == STAGES
    assert all(run.info.status == "FINISHED" for run in stages.values())
    assert parent.data.params["experiment"] == "tiny"
    assert parent.data.params["train.label_smoothing"] == "0.1"


def test_scrape_obeys_robots_and_records_every_url(runs):
    _, _, stages = runs
    m = stages["scrape"].data.metrics
    assert m["pages_crawled"] >= 20
    assert m["pairs_written"] >= 2000
    assert any(k.endswith("robots_disallowed") and v > 0 for k, v in m.items())
    assert any(k.endswith("http_404") and v > 0 for k, v in m.items())


def test_funnel_adds_up_and_every_rule_fires(runs):
    client, _, stages = runs
    m = stages["filter"].data.metrics
    dropped = {k: v for k, v in m.items() if k.startswith("dropped.")}
    assert m["kept_pairs"] + sum(dropped.values()) == m["input_pairs"]
    assert m["input_pairs"] == stages["scrape"].data.metrics["pairs_written"]
    fired = {k for k, v in dropped.items() if v > 0}
    assert len(fired) >= 8, dropped
    artifacts = {a.path for a in client.list_artifacts(stages["filter"].info.run_id)}
    assert {"funnel.json", "funnel.png", "contamination.jsonl"} <= artifacts
    # Every near-copy of an evaluation image is reported under the set it copies.
    contaminated = {k: v for k, v in m.items() if k.startswith("contamination.")}
    assert set(contaminated) == {"contamination.demo", "contamination.demo_shapes"}
    assert sum(contaminated.values()) == m["dropped.image_eval_duplicate"] > 0


def test_training_logged_curves_and_lowered_the_loss(runs):
    client, _, stages = runs
    run = stages["train"]
    loss = client.get_metric_history(run.info.run_id, "loss")
    temperature = client.get_metric_history(run.info.run_id, "temperature")
    assert len(loss) >= 10 and len(temperature) == len(loss)
    assert loss[-1].value < loss[0].value - 1.0  # from ~ln(batch) * 2 at the start
    assert temperature[-1].value < 0.5  # learned from its init of 1.0
    assert client.get_metric_history(run.info.run_id, "learning_rate")
    assert "training_curves.png" in {a.path for a in client.list_artifacts(run.info.run_id)}


def test_model_learned_far_above_chance(runs):
    _, _, stages = runs
    m = stages["evaluate"].data.metrics
    for direction in ("image_to_text", "text_to_image"):
        assert m[f"demo/{direction}_r1"] >= 10 * m[f"demo/{direction}_r1_chance"], m
        assert m[f"demo/{direction}_r1"] <= m[f"demo/{direction}_r5"] <= m[f"demo/{direction}_r10"]
    # Shapes are the demo's hardest attribute (colours and positions are learnt first); the
    # tiny preset's 700 steps classify them zero-shot well above chance (45% of 120 images,
    # chance 1/6, in docs/results.md's fresh-clone run).
    assert m["demo_shapes/zero_shot_top1_chance"] == pytest.approx(1 / 6)
    assert m["demo_shapes/zero_shot_top1"] >= 1.5 * m["demo_shapes/zero_shot_top1_chance"], m
    assert not any(k.startswith("champion/") for k in m)  # the first run has no champion to score


def test_first_model_registered_as_champion(runs, pipeline_run):
    client, _, stages = runs
    version = client.get_model_version_by_alias("align-dual-encoder", "champion")
    assert version.version == stages["register"].data.tags["model_version"] == "1"
    assert stages["register"].data.tags["decision"] == "promoted"
    assert float(version.tags["alignpipe.score"]) == pytest.approx(
        stages["evaluate"].data.metrics["demo/image_to_text_r1"]  # the mean over the one retrieval set
    )
    assert "became champion" in pipeline_run["stdout"]


def test_the_corpus_index_holds_every_kept_image_with_the_registered_models_vectors(runs, pipeline_run):
    from alignpipe.search.corpus_index import CorpusIndex

    _, _, stages = runs
    run = stages["index"]
    assert run.data.params["index.model_uri"] == "models:/align-dual-encoder/1"
    index = CorpusIndex.load(run.data.params["index.uri"])
    assert run.data.params["index.uri"] == os.path.join(pipeline_run["work_dir"], "index")
    kept = stages["filter"].data.metrics["kept_pairs"]
    assert 0 < len(index) == run.data.metrics["items"] == run.data.metrics["images_embedded"]
    assert len(index) <= len(index.texts) == run.data.metrics["texts"] <= kept
    assert index.thumbnail(0) is not None
    assert run.data.params["index.uri"] in pipeline_run["stdout"]


def test_the_serve_command_the_run_prints_shows_its_images_for_a_text_query_in_a_browser(
    pipeline_run, browser, tmp_path
):
    """What a user does next: run the printed `alignpipe serve` line (on a free port), open the
    page, type a query, see the demo's images."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.serving.conftest import free_socket, serve_process

    line = next(line for line in pipeline_run["stdout"].splitlines() if line.startswith("Search it: "))
    command = line.removeprefix("Search it: ").split("   (")[0].split()
    assert command[1] == "serve" and os.path.basename(command[0]) == "alignpipe"
    with free_socket() as sock:
        port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    env = {"MLFLOW_TRACKING_URI": pipeline_run["tracking_uri"]}
    with serve_process([*command[2:], "--port", str(port)], env, f"{base}/health"):
        browser.get(base + "/")
        browser.find_element(By.ID, "query-text").send_keys("a red circle")
        browser.find_element(By.ID, "search-button").click()
        cards = WebDriverWait(browser, 120).until(test_search_page.loaded_cards)
        assert cards and cards[0].find_element(By.TAG_NAME, "img").get_attribute("src").startswith(base)
        test_search_page.screenshot(browser, "search-demo-run.png", tmp_path)


def test_summary_printed(pipeline_run):
    out = pipeline_run["stdout"]
    for text in (
        "pages crawled",
        "pairs scraped",
        "kept",
        "dropped",
        "loss",
        "temperature",
        "R@1/5/10",
        "zero-shot classification",
        "version 1",
    ):
        assert text in out, text


def test_challenger_only_replaces_a_better_champion(pipeline_run, runs, tmp_path):
    """Standalone `evaluate` scores the model and the champion on the same sets in one run;
    `register` keeps the champion on a tie or a gain within the margin, and moves it on more."""
    client, parent, _ = runs
    model_dir = model_dir_of(pipeline_run["work_dir"])
    common = ["--work-dir", pipeline_run["work_dir"], "--tracking-uri", pipeline_run["tracking_uri"]]
    for key in ("retrieval_sets", "classification_sets"):
        common += ["--set", f"eval.{key}={parent.data.params[f'eval.{key}']}"]
    scores_path = tmp_path / "scores.json"
    proc = run_cli("evaluate", "--model", model_dir, "--out", str(scores_path), *common)
    assert proc.returncode == 0, proc.stderr
    scores = json.loads(scores_path.read_text())
    assert scores["champion"]["version"] == "1"
    # The champion is this very model: the same sets give it the same scores.
    assert scores["champion"]["metrics"] == pytest.approx(scores["challenger"])
    best = scores["challenger"]["demo/image_to_text_r1"]
    cases = ((0.0, 0.0, False, "1"), (0.01, 0.02, False, "1"), (0.03, 0.02, True, "4"))
    for gain, margin, promoted, expected_champion in cases:
        scores["challenger"]["demo/image_to_text_r1"] = best + gain
        scores_path.write_text(json.dumps(scores))
        proc = run_cli(
            "register",
            "--model",
            model_dir,
            "--metrics",
            str(scores_path),
            "--set",
            f"register.margin={margin}",
            *common,
        )
        assert proc.returncode == 0, proc.stderr
        decision = json.loads(proc.stdout)
        assert decision["promoted"] is promoted and decision["champion_score"] == pytest.approx(best)
        champion = client.get_model_version_by_alias("align-dual-encoder", "champion")
        assert champion.version == expected_champion
    # The champion has moved since `scores` were taken: they no longer decide anything.
    scores["challenger"]["demo/image_to_text_r1"] = 1.0
    scores_path.write_text(json.dumps(scores))
    proc = run_cli("register", "--model", model_dir, "--metrics", str(scores_path), *common)
    decision = json.loads(proc.stdout)
    assert decision["promoted"] is False and "rerun evaluate" in decision["reason"]
