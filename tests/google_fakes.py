"""A fake of Google Cloud's REST APIs on 127.0.0.1, for the real client libraries to talk to.

Google Cloud cannot run here, so `FakeCloud` answers the requests this project's code makes
(Vertex AI pipeline jobs, schedules, metadata and the Model Registry; Cloud Storage through
STORAGE_EMULATOR_HOST; Artifact Registry template downloads) beside a fake Kubeflow Pipelines
API. It records every request, so that tests assert on exactly what was sent, and
`fake_google_cloud` points the libraries at it with anonymous credentials while a guard refuses
any host but 127.0.0.1. A test module makes it a fixture:

    @pytest.fixture
    def fake(monkeypatch):
        yield from fake_google_cloud(monkeypatch)
"""

from __future__ import annotations

import json
import re
import socket
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PROJECT, PROJECT_NUMBER, REGION, BUCKET = "my-proj", "123", "europe-west4", "align-bucket"
LOCATION = f"projects/{PROJECT}/locations/{REGION}"
CREATED = f"projects/{PROJECT_NUMBER}/locations/{REGION}"  # Vertex AI names what it creates by number
STORE = f"{CREATED}/metadataStores/default"
CONTEXTS = f"{STORE}/contexts"
UPLOAD_RESPONSE = "type.googleapis.com/google.cloud.aiplatform.v1.UploadModelResponse"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: dict | None


class FakeCloud:
    """Google Cloud's and Kubeflow's REST APIs, as far as this project uses them."""

    def __init__(self) -> None:
        self.url = ""
        self.requests: list[Request] = []
        self.files: dict[str, bytes] = {}  # published templates by gs:// or https:// URL
        self.jobs: dict[str, dict] = {}
        self.kfp_experiments: list[dict] = []
        self.models: dict[str, list[dict]] = {}  # Model Registry: model id -> its versions
        self.routes = [
            ("GET", r"/storage/v1/b/([^/]+)", lambda r, b: {"name": b, "projectNumber": PROJECT_NUMBER}),
            ("GET", r"/download/storage/v1/b/([^/]+)/o/(.+)", lambda r, b, o: self.files[f"gs://{b}/{o}"]),
            ("GET", r"/artifact-registry/(.+)", lambda r, rest: self.files[f"https://{rest}"]),
            ("POST", rf"/v1/{LOCATION}/pipelineJobs", self.create_job),
            ("GET", rf"/v1/{CREATED}/pipelineJobs/([^/]+)", self.get_job),
            ("POST", rf"/v1/{LOCATION}/schedules", lambda r: {**r.body, "name": f"{CREATED}/schedules/42"}),
            ("GET", rf"/v1/{LOCATION}/metadataStores/default", lambda r: {"name": STORE}),
            ("GET", rf"/v1/{LOCATION}/metadataStores/default/contexts/([^/]+)", self.experiment),
            ("POST", rf"/v1/{CONTEXTS}/([^/]+):addContextChildren", lambda r, experiment: {}),
            ("GET", rf"/v1/{LOCATION}/models", self.list_models),
            ("POST", rf"/v1/{LOCATION}/models:upload", self.upload_model),
            ("GET", rf"/v1/{CREATED}/models/([^/@]+)@([^/]+)", self.get_model_version),
            ("GET", r"/apis/v2beta1/healthz", lambda r: {"multi_user": False}),
            ("GET", r"/apis/v2beta1/experiments", self.list_experiments),
            ("POST", r"/apis/v2beta1/experiments", self.create_experiment),
            ("POST", r"/apis/v2beta1/recurringruns", lambda r: {**r.body, "recurring_run_id": "rr-1"}),
        ]

    def answer(self, method: str, target: str, body: bytes) -> tuple[int, bytes]:
        url = urllib.parse.urlsplit(target)
        path = urllib.parse.unquote(url.path)
        request = Request(method, path, urllib.parse.parse_qs(url.query), json.loads(body) if body else None)
        self.requests.append(request)
        for route_method, pattern, handler in self.routes:
            match = re.fullmatch(pattern, path)
            if route_method == method and match:
                out = handler(request, *match.groups())
                return 200, out if isinstance(out, bytes) else json.dumps(out).encode()
        return 404, json.dumps({"error": {"code": 404, "message": f"no fake for {method} {path}"}}).encode()

    def calls(self) -> list[tuple[str, str]]:
        return [(r.method, r.path) for r in self.requests]

    def only(self, method: str, path_end: str) -> Request:
        (found,) = [r for r in self.requests if r.method == method and r.path.endswith(path_end)]
        return found

    def create_job(self, request):
        job_id = request.query["pipelineJobId"][0]
        self.jobs[job_id] = {**request.body, "name": f"{CREATED}/pipelineJobs/{job_id}"}
        return {**self.jobs[job_id], "state": "PIPELINE_STATE_PENDING"}

    def get_job(self, request, job_id):
        context = {"name": f"{CONTEXTS}/{job_id}", "schemaTitle": "system.PipelineRun"}
        return {
            **self.jobs[job_id],
            "state": "PIPELINE_STATE_RUNNING",
            "jobDetail": {"pipelineRunContext": context},
        }

    def experiment(self, request, name):
        return {
            "name": f"{CONTEXTS}/{name}",
            "displayName": name,
            "schemaTitle": "system.Experiment",
            "metadata": {"experiment_deleted": False},
        }

    def list_experiments(self, request):
        wanted = json.loads(request.query["filter"][0])["predicates"][0]["stringValue"]
        return {"experiments": [e for e in self.kfp_experiments if e["display_name"] == wanted]}

    def create_experiment(self, request):
        self.kfp_experiments.append({**request.body, "experiment_id": f"exp-{len(self.kfp_experiments) + 1}"})
        return self.kfp_experiments[-1]

    def list_models(self, request):
        """Each model's default version, filtered on `display_name="..."` only."""
        wanted = re.fullmatch(r'display_name="(.*)"', request.query.get("filter", [""])[0])
        found = [
            next(v for v in versions if "default" in v["versionAliases"])
            for versions in self.models.values()
            if not wanted or versions[0]["displayName"] == wanted.group(1)
        ]
        return {"models": found}

    def upload_model(self, request):
        """A new model, or a new version of `parentModel`; as Vertex AI does, an alias given to
        the new version leaves the version that held it."""
        parent = request.body.get("parentModel", "")
        model_id = parent.rsplit("/", 1)[-1] if parent else str(len(self.models) + 1001)
        versions = self.models.setdefault(model_id, [])
        aliases = request.body["model"].get("versionAliases", [])
        if not versions and "default" not in aliases:
            aliases = [*aliases, "default"]  # the first version is the default one
        for version in versions:
            version["versionAliases"] = [a for a in version["versionAliases"] if a not in aliases]
        name = f"{CREATED}/models/{model_id}"
        version_id = str(len(versions) + 1)
        versions.append(
            {**request.body["model"], "name": name, "versionId": version_id, "versionAliases": aliases}
        )
        response = {"@type": UPLOAD_RESPONSE, "model": name, "modelVersionId": version_id}
        return {"name": f"{name}/operations/{len(self.requests)}", "done": True, "response": response}

    def get_model_version(self, request, model_id, version_id):
        (version,) = [v for v in self.models[model_id] if v["versionId"] == version_id]
        return version


def serve(cloud: FakeCloud) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                status, data = cloud.answer(self.command, self.path, body)
            except Exception as e:  # a fake's bug: answer it, so that the test fails on it at once
                status, data = 500, json.dumps({"error": {"code": 500, "message": repr(e)}}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_POST = do_GET

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    cloud.url = f"http://127.0.0.1:{server.server_port}"
    return server


def fake_google_cloud(monkeypatch) -> Iterator[FakeCloud]:
    """The fake APIs, the client libraries pointed at them, every other host refused; for a
    fixture to `yield from`. Fails the test if anything tried to reach another host."""
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.aiplatform import initializer
    from google.cloud.aiplatform.utils import resource_manager_utils

    cloud = FakeCloud()
    server = serve(cloud)
    blocked: list[str] = []
    getaddrinfo, urlopen = socket.getaddrinfo, urllib.request.urlopen

    def loopback_only(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost"):
            blocked.append(str(host))
            raise OSError(f"test guard: no network beyond 127.0.0.1 ({host})")
        return getaddrinfo(host, *args, **kwargs)

    def registry_via_fake(request, *args, **kwargs):  # the SDK reads registry templates with urllib
        url = request.full_url if isinstance(request, urllib.request.Request) else request
        assert url.startswith(f"https://{REGION}-kfp.pkg.dev/"), url
        return urlopen(f"{cloud.url}/artifact-registry/{url.removeprefix('https://')}", *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)
    monkeypatch.setattr(urllib.request, "urlopen", registry_via_fake)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", cloud.url)
    # A fresh aiplatform.init() state, restored afterwards: REST to the fake, anonymous credentials.
    monkeypatch.setattr(initializer, "global_config", initializer._Config())
    initializer.global_config.init(
        api_endpoint=cloud.url, api_transport="rest", credentials=AnonymousCredentials()
    )
    # The SDK's bucket-ownership check asks Resource Manager over gRPC, which this fake does not speak.
    monkeypatch.setattr(resource_manager_utils, "get_project_number", lambda *args, **kwargs: PROJECT_NUMBER)
    monkeypatch.setenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # cli.main sets it
    yield cloud
    server.shutdown()
    server.server_close()
    assert not blocked, f"requests beyond 127.0.0.1 were attempted: {blocked}"
