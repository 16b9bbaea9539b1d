"""A fake of Google Cloud's REST APIs on 127.0.0.1, for the real client libraries to talk to.

Google Cloud cannot run here, so `FakeCloud` answers the requests this project's code makes
(Vertex AI pipeline jobs, schedules, metadata and the Model Registry; Cloud Storage through
STORAGE_EMULATOR_HOST; Artifact Registry template uploads and downloads; OAuth token refreshes)
beside a fake Kubeflow Pipelines API. It records every request, so that tests assert on exactly
what was sent, and `fake_google_cloud` points the libraries at it (aiplatform with anonymous
credentials; the application default credentials are a user login whose token comes from the
fake) while a guard refuses any host but 127.0.0.1. A test module makes it a fixture:

    @pytest.fixture
    def fake(monkeypatch):
        yield from fake_google_cloud(monkeypatch)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import tempfile
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

PROJECT, PROJECT_NUMBER, REGION, BUCKET = "my-proj", "123", "europe-west4", "align-bucket"
LOCATION = f"projects/{PROJECT}/locations/{REGION}"
CREATED = f"projects/{PROJECT_NUMBER}/locations/{REGION}"  # Vertex AI names what it creates by number
STORE = f"{CREATED}/metadataStores/default"
CONTEXTS = f"{STORE}/contexts"
UPLOAD_RESPONSE = "type.googleapis.com/google.cloud.aiplatform.v1.UploadModelResponse"
TEMPLATES_REPO = "align-templates"  # the one Artifact Registry KFP repository that exists here
KFP_REPOSITORY = f"https://{REGION}-kfp.pkg.dev/{PROJECT}/{TEMPLATES_REPO}"
TOKEN_URL = "https://oauth2.googleapis.com/token"  # where a user login's access tokens come from
ACCESS_TOKEN = "fake-access-token"  # what the fake's token endpoint hands the default credentials


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: dict | None  # a JSON body
    headers: dict[str, str] = field(default_factory=dict)  # names in lowercase
    form: dict[str, str] = field(default_factory=dict)  # form fields (urlencoded or multipart)
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # multipart files: (filename, data)


def parse_request(method: str, target: str, body: bytes, headers: dict[str, str]) -> Request:
    """A request as recorded: JSON, form-urlencoded and multipart bodies parsed."""
    url = urllib.parse.urlsplit(target)
    request = Request(method, urllib.parse.unquote(url.path), urllib.parse.parse_qs(url.query), None)
    request.headers = {k.lower(): v for k, v in headers.items()}
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/x-www-form-urlencoded"):
        request.form = dict(urllib.parse.parse_qsl(body.decode()))
    elif content_type.startswith("multipart/form-data"):
        boundary = re.search(r'boundary="?([^";]+)', content_type).group(1).encode()
        for part in body.split(b"--" + boundary)[1:-1]:
            head, _, data = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
            data = data.removesuffix(b"\r\n")
            name = re.search(rb'\bname="([^"]*)"', head).group(1).decode()
            filename = re.search(rb'\bfilename="([^"]*)"', head)
            if filename:
                request.files[name] = (filename.group(1).decode(), data)
            else:
                request.form[name] = data.decode()
    elif body:
        request.body = json.loads(body)
    return request


class FakeCloud:
    """Google Cloud's and Kubeflow's REST APIs, as far as this project uses them."""

    def __init__(self) -> None:
        self.url = ""
        self.requests: list[Request] = []
        self.files: dict[str, bytes] = {}  # published templates by gs:// or https:// URL
        self.jobs: dict[str, dict] = {}
        self.kfp_experiments: list[dict] = []
        self.models: dict[str, list[dict]] = {}  # Model Registry: model id -> its versions
        templates = re.escape(KFP_REPOSITORY.removeprefix("https://"))
        self.routes = [
            ("GET", r"/storage/v1/b/([^/]+)", lambda r, b: {"name": b, "projectNumber": PROJECT_NUMBER}),
            ("GET", r"/download/storage/v1/b/([^/]+)/o/(.+)", lambda r, b, o: self.files[f"gs://{b}/{o}"]),
            ("GET", r"/artifact-registry/(.+)", lambda r, rest: self.files[f"https://{rest}"]),
            ("POST", rf"/artifact-registry/({templates})", self.upload_template),
            ("POST", r"/token", self.issue_token),
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

    def answer(
        self, method: str, target: str, body: bytes, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        request = parse_request(method, target, body, headers or {})
        self.requests.append(request)
        for route_method, pattern, handler in self.routes:
            match = re.fullmatch(pattern, request.path)
            if route_method == method and match:
                out = handler(request, *match.groups())
                return 200, out if isinstance(out, bytes) else json.dumps(out).encode()
        message = f"no fake for {method} {request.path}"
        return 404, json.dumps({"error": {"code": 404, "message": message}}).encode()

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

    def issue_token(self, request):
        return {"access_token": ACCESS_TOKEN, "expires_in": 3600, "token_type": "Bearer"}

    def upload_template(self, request, repository):
        """A new version, named by the digest of the file, of the template the file's pipeline
        names; its tags move to it. Answers `NAME/VERSION` in plain text, as Artifact Registry does."""
        content = request.files["content"][1]
        name = next(yaml.safe_load_all(content))["pipelineInfo"]["name"]
        version = f"sha256:{hashlib.sha256(content).hexdigest()}"
        for ref in [version, *filter(None, request.form.get("tags", "").split(","))]:
            self.files[f"https://{repository}/{name}/{ref}"] = content
        return f"{name}/{version}".encode()

    def get_model_version(self, request, model_id, version_id):
        (version,) = [v for v in self.models[model_id] if v["versionId"] == version_id]
        return version


def serve(cloud: FakeCloud) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                status, data = cloud.answer(self.command, self.path, body, dict(self.headers))
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
    import requests
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.aiplatform import initializer
    from google.cloud.aiplatform.utils import resource_manager_utils

    cloud = FakeCloud()
    server = serve(cloud)
    blocked: list[str] = []
    getaddrinfo, urlopen = socket.getaddrinfo, urllib.request.urlopen
    send = requests.adapters.HTTPAdapter.send

    def loopback_only(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost"):
            blocked.append(str(host))
            raise OSError(f"test guard: no network beyond 127.0.0.1 ({host})")
        return getaddrinfo(host, *args, **kwargs)

    def registry_via_fake(request, *args, **kwargs):  # the SDK reads registry templates with urllib
        url = request.full_url if isinstance(request, urllib.request.Request) else request
        assert url.startswith(f"https://{REGION}-kfp.pkg.dev/"), url
        return urlopen(f"{cloud.url}/artifact-registry/{url.removeprefix('https://')}", *args, **kwargs)

    def requests_via_fake(adapter, request, *args, **kwargs):  # kfp's RegistryClient and google.auth
        if request.url.startswith(f"https://{REGION}-kfp.pkg.dev/"):
            request.url = f"{cloud.url}/artifact-registry/{request.url.removeprefix('https://')}"
        elif request.url == TOKEN_URL:
            request.url = f"{cloud.url}/token"
        return send(adapter, request, *args, **kwargs)

    # Application default credentials: a user login whose refresh token the fake exchanges
    # (google.auth sends it to TOKEN_URL whatever the file says).
    adc_folder = tempfile.TemporaryDirectory(prefix="fake-adc-")
    adc = os.path.join(adc_folder.name, "application_default_credentials.json")
    with open(adc, "w") as f:
        json.dump(
            {
                "type": "authorized_user",
                "client_id": "fake-client",
                "client_secret": "fake-secret",
                "refresh_token": "fake-refresh-token",
            },
            f,
        )
    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)
    monkeypatch.setattr(urllib.request, "urlopen", registry_via_fake)
    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", requests_via_fake)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", adc)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", PROJECT)
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
    adc_folder.cleanup()
    assert not blocked, f"requests beyond 127.0.0.1 were attempted: {blocked}"
