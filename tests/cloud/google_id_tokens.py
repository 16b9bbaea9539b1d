"""Google ID tokens on 127.0.0.1: a service-account key whose token endpoint is a local server
that signs ID tokens for the audience asked for, and the check a Cloud Run front door makes.

The client side is real: `google.oauth2.id_token.fetch_id_token` (what `tracking.auth=
google_id_token` calls) reads the key file from GOOGLE_APPLICATION_CREDENTIALS, signs a JWT
assertion with it and posts it to the key's `token_uri`, as it would to Google's.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import crypt, jwt

from tests.local_http import QuietHandler

SERVICE_ACCOUNT = "pipelines@test.iam.gserviceaccount.com"


class IdTokenIssuer:
    """One signing key for both the service account's assertions and the issued ID tokens."""

    def __init__(self) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.private_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        self.public_pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.signer = crypt.RSASigner.from_string(self.private_pem, key_id="k1")
        self.issued: list[str] = []  # the audiences asked for

    def id_token(self, assertion: str) -> str:
        """An ID token for the `target_audience` of a service account's signed assertion."""
        claims = jwt.decode(assertion, certs=self.public_pem, verify=True, audience=None)
        now = int(time.time())
        self.issued.append(claims["target_audience"])
        body = {"aud": claims["target_audience"], "iss": "https://accounts.google.com", "iat": now}
        return jwt.encode(self.signer, {**body, "exp": now + 3600, "email": claims["iss"]}).decode()

    def accepts(self, authorization: str, service_url: str) -> bool:
        """Whether `authorization` carries an ID token of ours whose audience is `service_url`."""
        scheme, _, token = authorization.partition(" ")
        if scheme != "Bearer":
            return False
        try:
            jwt.decode(token, certs=self.public_pem, audience=service_url)
        except ValueError:
            return False
        return True


def _token_endpoint(issuer: IdTokenIssuer) -> type[BaseHTTPRequestHandler]:
    class TokenEndpoint(QuietHandler):
        def do_POST(self) -> None:
            form = urllib.parse.parse_qs(self.rfile.read(int(self.headers["Content-Length"])).decode())
            data = json.dumps({"id_token": issuer.id_token(form["assertion"][0])}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return TokenEndpoint


@contextlib.contextmanager
def service_account_key(folder: Path) -> Iterator[tuple[Path, IdTokenIssuer]]:
    """Writes a service-account key file into `folder` whose token endpoint runs meanwhile;
    yields the file (for GOOGLE_APPLICATION_CREDENTIALS) and its issuer."""
    issuer = IdTokenIssuer()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _token_endpoint(issuer))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    key = {
        "type": "service_account",
        "project_id": "test",
        "private_key_id": "k1",
        "private_key": issuer.private_pem,
        "client_email": SERVICE_ACCOUNT,
        "client_id": "1",
        "token_uri": f"http://127.0.0.1:{server.server_address[1]}/token",
    }
    path = folder / "service-account.json"
    path.write_text(json.dumps(key))
    try:
        yield path, issuer
    finally:
        server.shutdown()
        server.server_close()
