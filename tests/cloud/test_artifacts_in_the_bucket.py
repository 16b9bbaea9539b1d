"""Model artifacts go straight to the bucket; the MLflow server behind Cloud Run carries metadata.

Everything on 127.0.0.1: Cloud Storage is the real emulator, the tracking server a real
`mlflow server` started with infra/terraform's artifact flags, and in front of it a proxy with
Cloud Run's limits (32 MiB request bodies, an ID token for the service's URL). Tasks reach it
with `tracking.auth=google_id_token`, as on Vertex AI. A champion whose files exceed 32 MiB is
registered, scored by evaluation and warm-started from; the same registration through the
server's artifact proxy (the former setup) is refused with 413.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest
from google.cloud import storage
from mlflow.tracking import MlflowClient

from alignpipe.config import load_config
from alignpipe.model.encoder import AlignEncoder
from alignpipe.training.trainer import train
from components import mlflow_auth
from components.registry import champion_model_dir
from components.stages import evaluate_stage, register_stage, train_stage
from tests.cloud.cloud_run_proxy import MAX_REQUEST_BYTES, running_cloud_run_proxy
from tests.cloud.google_id_tokens import service_account_key
from tests.cloud.mlflow_server import running_mlflow_server, terraform_artifact_args
from tests.gcs_emulator import _free_port, running_gcs_emulator
from tests.training.conftest import COLOURS, SMALL_RUN, encode, square_image, write_shards

# one worker trains the model and runs the emulator once, for both tests
pytestmark = [pytest.mark.large, pytest.mark.xdist_group("cloud-artifacts")]

BUCKET = "alignpipe-test"
# A variables-like file that puts the model over Cloud Run's limit, as real variables (about
# 0.9 GB for the paper's model) do; random, so that no encoding could shrink it.
PADDING = "variables-padding.data"
PADDING_BYTES = 40 * 1024 * 1024


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    """The emulated bucket and the tasks' service-account key, in this process's environment."""
    root = tmp_path_factory.mktemp("cloud")
    with (
        pytest.MonkeyPatch.context() as env,
        running_gcs_emulator((BUCKET,)) as emulator,
        service_account_key(root) as (key, issuer),
    ):
        env.setenv("STORAGE_EMULATOR_HOST", emulator)
        env.setenv("GOOGLE_CLOUD_PROJECT", "test")
        env.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
        env.delenv(mlflow_auth.TOKEN_ENV, raising=False)
        env.setattr(mlflow_auth, "_REFRESHING", {})
        yield issuer
        for timer in mlflow_auth._REFRESHING.values():
            timer.cancel()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """A tiny trained model padded past 32 MiB, its training pairs and an evaluation set."""
    root = tmp_path_factory.mktemp("trained")
    write_shards(str(root / "pairs"), num_pairs=48)
    entries = []
    for k, (colour, side) in enumerate((c, s) for c in COLOURS for s in ("left", "right")):
        (root / "set").mkdir(exist_ok=True)
        (root / "set" / f"{k}.png").write_bytes(encode(square_image(colour, side, (40, 40)), "png"))
        entries.append(
            {"filename": f"{k}.png", "split": "test", "sentences": [{"raw": f"a {colour} square"}]}
        )
    (root / "set" / "squares.json").write_text(json.dumps({"images": entries}))
    overrides = [
        *SMALL_RUN,
        "eval.batch_size=4",
        f"eval.retrieval_sets=squares={root / 'set' / 'squares.json'}",
    ]
    train(load_config("local", "tiny", overrides), str(root / "pairs"), str(root / "model"))
    (root / "model" / PADDING).write_bytes(os.urandom(PADDING_BYTES))
    return {"root": root, "model": str(root / "model"), "pairs": str(root / "pairs"), "overrides": overrides}


def _cfg(trained: dict, tracking_uri: str, work_dir, *more: str):
    overrides = [
        *trained["overrides"],
        f"tracking.tracking_uri={tracking_uri}",
        "tracking.auth=google_id_token",
    ]
    return load_config("local", "tiny", [*overrides, f"runner.work_dir={work_dir}", *more])


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _weights(model_dir: str) -> list[np.ndarray]:
    return [w.numpy() for w in AlignEncoder.load(model_dir).model.trainable_weights]


def test_a_champion_over_32_mib_is_registered_scored_and_warm_started_from(cloud, trained, tmp_path):
    # The server's own way to Cloud Storage leads nowhere (a closed port on 127.0.0.1): it carries
    # metadata only, so the whole flow works without it.
    no_storage = {"STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{_free_port()}"}
    with (
        running_mlflow_server(tmp_path / "mlflow", terraform_artifact_args(BUCKET), no_storage) as server,
        running_cloud_run_proxy(server, accept=cloud.accepts) as proxy,
    ):
        cfg = _cfg(trained, proxy.url, tmp_path / "work")
        decision = register_stage(cfg.to_json(), "", trained["model"], {"squares/image_to_text_r1": 0.5})
        assert decision["promoted"] and decision["version"] == "1"

        # The model's bytes are in the bucket, and none of them went through the front door.
        blobs = list(storage.Client().bucket(BUCKET).list_blobs(prefix="mlflow/"))
        padding = [b for b in blobs if b.name.endswith(f"/{PADDING}")]
        assert [b.size for b in padding] == [PADDING_BYTES]
        assert max(r.body_bytes for r in proxy.seen) < MAX_REQUEST_BYTES
        assert not proxy.refused(401) and not proxy.refused(403) and not proxy.refused(413)
        assert cloud.issued and set(cloud.issued) == {proxy.url}  # ID tokens for the service's URL

        # Evaluation downloads the champion (the same model) and scores it as the challenger.
        scores = evaluate_stage(cfg.to_json(), "", trained["model"])
        assert scores["champion"]["version"] == "1"
        assert scores["champion"]["metrics"] and scores["champion"]["metrics"] == pytest.approx(
            scores["challenger"], abs=1e-6
        )
        version, folder = champion_model_dir(cfg, str(tmp_path / "champion"))
        assert version == "1"
        assert _sha256(os.path.join(folder, PADDING)) == _sha256(os.path.join(trained["model"], PADDING))

        # A warm start from the champion with a vanishing learning rate keeps its weights.
        warm = cfg.replace(train__init_from="champion", train__learning_rate=1e-12)
        train_stage(warm.to_json(), "", trained["pairs"], str(tmp_path / "warm"))
        for before, after in zip(_weights(trained["model"]), _weights(str(tmp_path / "warm")), strict=True):
            np.testing.assert_allclose(before, after, rtol=0, atol=1e-6)
        client = MlflowClient(proxy.url)
        train_runs = client.search_runs(
            [client.get_experiment_by_name(cfg.tracking.experiment).experiment_id],
            "tags.`alignpipe.stage` = 'train'",
        )
        assert train_runs[0].data.tags["warm_start"] == f"models:/{cfg.register.model_name}/1 (champion)"
        assert not proxy.refused(413)


def test_through_the_servers_artifact_proxy_the_same_registration_is_refused(cloud, trained, tmp_path):
    """The former setup: the server writes the bucket, clients upload each file to the server."""
    proxied = ["--serve-artifacts", "--artifacts-destination", f"gs://{BUCKET}/proxied"]
    with (
        running_mlflow_server(tmp_path / "mlflow", proxied) as server,
        running_cloud_run_proxy(server, accept=cloud.accepts) as proxy,
    ):
        cfg = _cfg(trained, proxy.url, tmp_path / "work")
        with pytest.raises(Exception, match="413"):
            register_stage(cfg.to_json(), "", trained["model"], {"squares/image_to_text_r1": 0.5})
        too_large = proxy.refused(413)
        assert [r.body_bytes for r in too_large] == [PADDING_BYTES]
        assert too_large[0].path.startswith("/api/2.0/mlflow-artifacts/artifacts/")
        assert too_large[0].path.endswith(f"/{PADDING}")
        # The model's other files went through: the limit, not the setup, is what failed.
        assert any(r.method == "PUT" and r.status == 200 for r in proxy.seen)
        assert MlflowClient(proxy.url).search_model_versions(f"name = '{cfg.register.model_name}'") == []
