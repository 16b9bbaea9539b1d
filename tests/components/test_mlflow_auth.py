"""Tokens for a shared MLflow server: a Google ID token and a Secret Manager secret.

Google's token endpoint and Secret Manager are fakes on 127.0.0.1 (the client libraries are
real); the tests assert on what they were sent and on what reaches the tracking server.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import crypt, jwt

from alignpipe.config import load_config
from components import mlflow_auth, mlflow_store
from tests.local_http import QuietHandler, serving

SERVER = "https://mlflow-abc-ew.a.run.app"
SECRET = "projects/p/secrets/mlflow-token/versions/3"


class Recorder(BaseHTTPRequestHandler):
    """Answers Google's token endpoint, Secret Manager and an MLflow /health; records requests."""

    seen: list[tuple[str, str, dict, bytes]] = []
    signer: crypt.RSASigner

    def _answer(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.seen.append(("POST", self.path, dict(self.headers), body))
        now = int(time.time())
        token = jwt.encode(self.signer, {"aud": SERVER, "iat": now, "exp": now + 3600}).decode()
        self._answer({"id_token": token})

    def do_GET(self) -> None:
        self.seen.append(("GET", self.path, dict(self.headers), b""))
        if self.path.startswith(f"/v1/{SECRET}:access"):
            self._answer({"name": SECRET, "payload": {"data": base64.b64encode(b"s3cret-token\n").decode()}})
        else:
            self._answer({"status": "OK"})


@pytest.fixture
def fake(tmp_path, monkeypatch):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    Recorder.seen, Recorder.signer = [], crypt.RSASigner.from_string(pem)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    account = {
        "type": "service_account",
        "project_id": "p",
        "private_key_id": "k1",
        "private_key": pem,
        "client_email": "pipelines@p.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": f"{url}/token",
    }
    (tmp_path / "sa.json").write_text(json.dumps(account))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "sa.json"))
    monkeypatch.setenv("SECRET_MANAGER_ENDPOINT", url)
    monkeypatch.delenv(mlflow_auth.TOKEN_ENV, raising=False)
    monkeypatch.setattr(mlflow_auth, "_REFRESHING", {})
    monkeypatch.setattr(mlflow_auth, "REFRESH_S", 3600.0)
    yield url
    for timer in mlflow_auth._REFRESHING.values():
        timer.cancel()
    server.shutdown()


def _cfg(auth: str, server: str = SERVER):
    return load_config("local", "tiny", [f"tracking.tracking_uri={server}", f"tracking.auth={auth}"])


def test_a_google_id_token_for_the_servers_url(fake, monkeypatch):
    mlflow_auth.authenticate(_cfg("google_id_token"), SERVER)
    method, path, _, body = Recorder.seen[-1]
    form = urllib.parse.parse_qs(body.decode())
    assert (method, path) == ("POST", "/token")
    assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
    claims = jwt.decode(form["assertion"][0], verify=False)
    assert claims["target_audience"] == SERVER and claims["iss"] == "pipelines@p.iam.gserviceaccount.com"
    token = mlflow_auth.os.environ[mlflow_auth.TOKEN_ENV]
    assert jwt.decode(token, verify=False)["aud"] == SERVER
    assert SERVER in mlflow_auth._REFRESHING  # replaced before it expires
    # The health check sends it too, as MLflow's client does.
    mlflow_store.check_server(fake, wait_s=1)
    assert Recorder.seen[-1][2]["Authorization"] == f"Bearer {token}"


def test_a_token_kept_in_secret_manager(fake):
    """For a server behind a proxy that checks a static token: never Cloud Run (the next test)."""
    server = "https://mlflow.example.org"
    mlflow_auth.authenticate(_cfg(f"secret:{SECRET}", server), server)
    method, path, _, _ = Recorder.seen[-1]
    assert (method, path.partition("?")[0]) == ("GET", f"/v1/{SECRET}:access")
    assert mlflow_auth.os.environ[mlflow_auth.TOKEN_ENV] == "s3cret-token"


def test_a_static_token_for_a_cloud_run_server_is_refused_at_load_time():
    for server in (SERVER, "https://mlflow-123456789.europe-west4.run.app/"):
        with pytest.raises(mlflow_auth.AlignPipeError, match="only Google-signed ID tokens") as refused:
            _cfg(f"secret:{SECRET}", server)
        assert str(refused.value).startswith(f"tracking.auth='secret:{SECRET}' is not allowed")


def test_no_token_is_one_clear_error(fake, monkeypatch, tmp_path):
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    with pytest.raises(
        mlflow_auth.AlignPipeError, match="tracking.auth='google_id_token': no token for the MLflow"
    ):
        mlflow_auth.authenticate(_cfg("google_id_token"), SERVER)


class CloudRunRefusal(QuietHandler):
    """What Cloud Run answers a caller without roles/run.invoker: 403, whatever the path."""

    seen: list[dict] = []

    def do_GET(self) -> None:
        self.seen.append(dict(self.headers))
        body = b"<html><body>Error: Forbidden</body></html>"
        self.send_response(403)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def refusing_server():
    CloudRunRefusal.seen = []
    with serving(CloudRunRefusal) as url:
        yield url


@pytest.mark.parametrize("auth", ["", "google_id_token"])
def test_a_server_that_refuses_the_caller_is_one_clear_error_at_once(refusing_server, monkeypatch, auth):
    """Reachable but refused is not "up": the task stops before its work, naming the caller and
    the role it lacks, instead of failing on its first MLflow request (or waiting out the wait)."""
    from components import tracking

    monkeypatch.setenv(mlflow_auth.TOKEN_ENV, "a-token-cloud-run-rejects")
    monkeypatch.setattr(mlflow_auth, "authenticate", lambda cfg, uri: None)  # the token above
    sa = "pipelines@p.iam.gserviceaccount.com"
    cfg = load_config(
        "local",
        "tiny",
        [
            f"tracking.tracking_uri={refusing_server}",
            f"tracking.auth={auth}",
            f"runner.service_account={sa}",
            "tracking.server_wait_s=60",
        ],
    )
    started = time.monotonic()
    with pytest.raises(mlflow_store.AlignPipeError) as refused:
        tracking.connect(cfg)
    message = str(refused.value)
    assert time.monotonic() - started < 10  # not the 60 s wait for a server that is down
    assert "\n" not in message
    assert f"reachable but refuses {sa} (HTTP 403)" in message
    assert "roles/run.invoker" in message
    assert ("set tracking.auth=google_id_token" in message) is (auth == "")
    assert CloudRunRefusal.seen[-1]["Authorization"] == "Bearer a-token-cloud-run-rejects"


def test_basic_credentials_reach_the_health_check_as_mlflow_sends_them(refusing_server, monkeypatch):
    monkeypatch.delenv(mlflow_auth.TOKEN_ENV, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "pw")
    with pytest.raises(mlflow_store.AlignPipeError, match="refuses the task's service account"):
        mlflow_store.check_server(refusing_server, wait_s=1)
    assert CloudRunRefusal.seen[-1]["Authorization"] == "Basic " + base64.b64encode(b"alice:pw").decode()
