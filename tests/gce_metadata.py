"""The Compute Engine metadata server on 127.0.0.1: where Vertex AI tasks and Dataflow workers get
their service account's project and access tokens (Application Default Credentials).

google-auth asks `GCE_METADATA_HOST` / `GCE_METADATA_IP` instead of 169.254.169.254 when they
are set; with them pointing here, Beam's `gs://` file system finds credentials at once in every
process (a test's own, and the scrape's worker processes), as on a Google Cloud worker, instead of
retrying for ~20 s and then connecting anonymously. The Cloud Storage emulator ignores the token.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import shutil
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator

from tests.local_http import QuietHandler

SERVICE_ACCOUNT = "alignpipe-pipeline@test.iam.gserviceaccount.com"
ACCESS_TOKEN = "metadata-server-test-token"


class MetadataHandler(QuietHandler):
    """Answers the metadata paths google-auth reads (project, account, access and ID tokens);
    404 for everything else, as the real one does."""

    project = "test"

    def do_GET(self) -> None:
        if self.headers.get("Metadata-Flavor") != "Google":
            return self._answer(403, "text/plain", "Missing Metadata-Flavor:Google header.")
        path, _, query = self.path.partition("?")
        accounts = "/computeMetadata/v1/instance/service-accounts/"
        info = {"email": SERVICE_ACCOUNT, "aliases": ["default"], "scopes": []}
        answers = {
            "/": ("text/plain", ""),
            "/computeMetadata/v1/project/project-id": ("text/plain", self.project),
            f"{accounts}default/": ("application/json", json.dumps(info)),
            f"{accounts}{SERVICE_ACCOUNT}/": ("application/json", json.dumps(info)),
            f"{accounts}default/token": ("application/json", _token()),
            f"{accounts}{SERVICE_ACCOUNT}/token": ("application/json", _token()),
        }
        audience = urllib.parse.parse_qs(query).get("audience", [""])[0]
        if path == f"{accounts}default/identity" and audience:
            answers[path] = ("text/plain", id_token(audience))
        if path not in answers:
            return self._answer(404, "text/plain", "Not Found")
        return self._answer(200, *answers[path])

    def _answer(self, status: int, content_type: str, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Metadata-Flavor", "Google")
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _token() -> str:
    return json.dumps({"access_token": ACCESS_TOKEN, "expires_in": 3600, "token_type": "Bearer"})


def id_token(audience: str) -> str:
    """A Google ID token's form (a JWT naming the audience and the account, an hour long), as the
    identity endpoint gives a Cloud Run caller; its signature is not Google's."""

    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    now = int(time.time())
    claims = {"aud": audience, "email": SERVICE_ACCOUNT, "iss": "https://accounts.google.com"}
    claims |= {"iat": now, "exp": now + 3600, "sub": "1" * 21}
    return f"{part({'alg': 'RS256', 'typ': 'JWT'})}.{part(claims)}.{part({'signature': 'none'})}"


@contextlib.contextmanager
def running_metadata_server(monkeypatch) -> Iterator[str]:
    """Serves the metadata server on 127.0.0.1 and points google-auth at it (the environment,
    inherited by child processes, and this process's copy read at import); yields `host:port`."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), MetadataHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host = f"127.0.0.1:{server.server_address[1]}"
    empty_folder = tempfile.mkdtemp(prefix="gcloud-config-")
    try:
        # As on a worker: no key file, no gcloud login of the person running the tests.
        monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
        monkeypatch.setenv("CLOUDSDK_CONFIG", empty_folder)
        monkeypatch.setenv("GCE_METADATA_HOST", host)
        monkeypatch.setenv("GCE_METADATA_IP", host)
        monkeypatch.delenv("NO_GCE_CHECK", raising=False)
        metadata = sys.modules.get("google.auth.compute_engine._metadata")
        if metadata is not None:  # imported earlier: it read the variables then
            monkeypatch.setattr(metadata, "_GCE_METADATA_HOST", host)
            monkeypatch.setattr(metadata, "_NO_GCE_CHECK", False)
        _forget_beam_credentials(monkeypatch)
        yield host
    finally:
        server.shutdown()
        server.server_close()
        shutil.rmtree(empty_folder, ignore_errors=True)


def _forget_beam_credentials(monkeypatch) -> None:
    """Beam keeps the first credentials it found for the life of a process: an earlier test's
    (or none) would outlive that test's metadata server."""
    from apache_beam.internal.gcp import auth

    monkeypatch.setattr(auth._Credentials, "_credentials_init", False)
    monkeypatch.setattr(auth._Credentials, "_credentials", None)
