from google.cloud import storage

from alignpipe import fs


def test_beam_file_systems_and_the_storage_client_share_the_emulated_bucket(gcs_bucket):
    fs.write_json(fs.join(gcs_bucket, "runs/a/manifest.json"), {"count": 3})
    assert fs.read_json(f"{gcs_bucket}/runs/a/manifest.json") == {"count": 3}
    assert fs.glob(f"{gcs_bucket}/runs/*/manifest.json") == [f"{gcs_bucket}/runs/a/manifest.json"]
    blob = storage.Client().bucket("alignpipe-test").blob("runs/a/manifest.json")
    assert b'"count": 3' in blob.download_as_bytes()
