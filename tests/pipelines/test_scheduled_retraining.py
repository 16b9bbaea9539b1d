"""Scheduled retraining, as three runs of one incremental configuration would go.

The first run scrapes the web and trains from scratch; the second finds nothing new and stops
after the scrape; the third scrapes only the new page, filters the union of the two snapshots,
warm-starts from the champion and is compared with it.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from alignpipe.demo.demo_web import write_demo_web
from alignpipe.demo.serve import serve_folder
from components.tracking import ROLE_TAG, STAGE_TAG
from tests.pipelines.conftest import run_cli

# Its own worker group: three pipeline runs beside the other end-to-end tests, not after them.
pytestmark = [pytest.mark.e2e, pytest.mark.large, pytest.mark.xdist_group("e2e-scheduled")]

NEW_IMAGES = 40


def _add_a_page(site) -> None:
    """A new page of NEW_IMAGES new images, linked from the home page."""
    (site / "fresh").mkdir()
    rng = np.random.default_rng(7)
    imgs = []
    for i in range(NEW_IMAGES):
        out = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)).save(out, format="PNG")
        (site / "fresh" / f"{i}.png").write_bytes(out.getvalue())
        imgs.append(f'<img src="fresh/{i}.png" alt="a freshly published picture number {i} today">')
    (site / "fresh.html").write_text(f"<html><body>{''.join(imgs)}</body></html>")
    index = (site / "index.html").read_text()
    (site / "index.html").write_text(index.replace("</body>", '<a href="fresh.html">fresh</a></body>'))


def _runs(client: MlflowClient) -> list[dict]:
    """Each pipeline run, oldest first: {stage: run}."""
    experiment = client.get_experiment_by_name("scheduled")
    parents = client.search_runs(
        [experiment.experiment_id], f"tags.`{ROLE_TAG}` = 'pipeline'", order_by=["start_time ASC"]
    )
    runs = []
    for parent in parents:
        children = client.search_runs(
            [experiment.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
        )
        runs.append({"pipeline": parent} | {c.data.tags[STAGE_TAG]: c for c in children})
    return runs


def test_three_scheduled_runs(mlflow_server, tmp_path):
    demo = write_demo_web(str(tmp_path / "demo"))
    site = tmp_path / "demo" / "site"
    settings = [
        "tracking.experiment=scheduled",  # apart from the other tests' runs on the same server
        "register.model_name=align-scheduled",
        f"scrape.state_dir={tmp_path / 'state'}",
        f"scrape.corpus_dir={tmp_path / 'corpus'}",
        "train.init_from=champion",
        # a small model and few steps: what is checked is the runs' plumbing, not what they learn;
        # enough steps to clear register.min_chance_ratio (at 30 steps R@1 is chance: no champion)
        "train.steps=150",
        "model.image_size=32",
        "model.image_resize=36",
        "model.text_layers=1",
        "model.embed_dim=32",
        "scrape.allowed_networks=127.0.0.1/32",
        "scrape.image_hosts=allowed",
        f"eval.retrieval_sets=demo={demo.retrieval_set}",
        f"filter.unsafe_image_blocklist={demo.unsafe_image_blocklist}",
    ]
    with serve_folder(str(site)) as url:

        def run(name: str) -> str:
            args = [f"--set={item}" for item in [*settings, f"scrape.seed_urls={url}"]]
            proc = run_cli("run", "--work-dir", str(tmp_path / name), "--tracking-uri", mlflow_server, *args)
            assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
            return proc.stdout

        run("first")
        second = run("second")
        _add_a_page(site)
        run("third")

    client = MlflowClient(mlflow_server)
    first, second_run, third = _runs(client)
    assert all(r["pipeline"].info.status == "FINISHED" for r in (first, second_run, third))
    written = first["scrape"].data.metrics["pairs_written"]
    assert first["filter"].data.metrics["input_pairs"] == written > 2000
    assert "warm_start" not in first["train"].data.tags  # no champion yet: from scratch

    # nothing new: the scrape wrote nothing and the run stopped there
    assert second_run["scrape"].data.metrics["pairs_written"] == 0
    assert set(second_run) == {"pipeline", "scrape"}
    assert "nothing new since the last scrape" in second

    # the new page only; the filter reads both snapshots; training starts from the champion
    assert third["scrape"].data.metrics["pairs_written"] == NEW_IMAGES
    assert third["filter"].data.metrics["input_pairs"] == written + NEW_IMAGES
    champion = first["register"].data.tags["model_version"]
    assert third["train"].data.tags["warm_start"] == f"models:/align-scheduled/{champion} (champion)"
    assert third["register"].data.tags["decision"] in ("promoted", "kept_champion")
    listing = json.loads(next((tmp_path / "third" / "kfp-root").rglob("corpus.json")).read_text())
    assert len(listing["snapshots"]) == 2
