import google.auth
import google.auth.transport.requests
from google.auth import compute_engine, jwt
from google.cloud import storage
from google.oauth2 import id_token

from alignpipe import fs
from tests.gce_metadata import ACCESS_TOKEN, SERVICE_ACCOUNT


def test_beam_file_systems_and_the_storage_client_share_the_emulated_bucket(gcs_bucket):
    fs.write_json(fs.join(gcs_bucket, "runs/a/manifest.json"), {"count": 3})
    assert fs.read_json(f"{gcs_bucket}/runs/a/manifest.json") == {"count": 3}
    assert fs.glob(f"{gcs_bucket}/runs/*/manifest.json") == [f"{gcs_bucket}/runs/a/manifest.json"]
    blob = storage.Client().bucket("alignpipe-test").blob("runs/a/manifest.json")
    assert b'"count": 3' in blob.download_as_bytes()


def test_application_default_credentials_come_from_the_metadata_server_as_on_a_worker(gcs_bucket):
    credentials, project = google.auth.default()
    request = google.auth.transport.requests.Request()
    credentials.refresh(request)
    assert isinstance(credentials, compute_engine.Credentials) and project == "test"
    assert (credentials.token, credentials.service_account_email) == (ACCESS_TOKEN, SERVICE_ACCOUNT)
    token = id_token.fetch_id_token(request, "https://mlflow-abc-ew.a.run.app")
    claims = jwt.decode(token, verify=False)
    assert (claims["aud"], claims["email"]) == ("https://mlflow-abc-ew.a.run.app", SERVICE_ACCOUNT)
