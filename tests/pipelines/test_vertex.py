"""`alignpipe submit` / `schedule` and `pipelines.vertex`: the exact requests they send.

Google Cloud cannot run here, so a fake of its REST surface runs on 127.0.0.1 (Vertex AI
pipeline jobs, schedules and metadata; Cloud Storage through STORAGE_EMULATOR_HOST; Artifact
Registry template downloads) beside a fake Kubeflow Pipelines API (`tests.google_fakes`). The
real client libraries talk to it, it records every request, and a guard refuses any host but
127.0.0.1.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys

import pytest
import yaml

from alignpipe.config import load_config
from alignpipe.errors import AlignPipeError
from pipelines import cli, publish, vertex
from pipelines.align_pipeline import compile_pipeline
from tests.google_fakes import (
    ACCESS_TOKEN,
    BUCKET,
    CONTEXTS,
    CREATED,
    KFP_REPOSITORY,
    LOCATION,
    PROJECT,
    REGION,
    TEMPLATES_REPO,
    fake_google_cloud,
)
from tests.pipelines.conftest import ROOT, run_cli
from tests.pipelines.test_cli_errors import _one_clear_error

RUNNER_SA = "runner@my-proj.iam.gserviceaccount.com"
TARGET = [
    f"runner.gcp_project={PROJECT}",
    f"runner.gcp_region={REGION}",
    f"runner.pipeline_root=gs://{BUCKET}/root",
    f"runner.service_account={RUNNER_SA}",
    f"runner.data_image={REGION}-docker.pkg.dev/{PROJECT}/alignpipe/alignpipe-data:abc1234",
    f"runner.trainer_image={REGION}-docker.pkg.dev/{PROJECT}/alignpipe/alignpipe-trainer:abc1234",
    f"register.serving_image={REGION}-docker.pkg.dev/{PROJECT}/alignpipe/alignpipe-serving:abc1234",
    "tracking.tracking_uri=https://mlflow.example.org",
]
AR_TAG_URL = f"https://{REGION}-kfp.pkg.dev/{PROJECT}/align-templates/align/v1"
AR_DIGEST_URL = f"https://{REGION}-kfp.pkg.dev/{PROJECT}/align-templates/align/sha256:{'ab' * 32}"
CONSOLE = "https://console.cloud.google.com/vertex-ai/locations"


@pytest.fixture
def fake(monkeypatch):
    """The fake APIs (`tests.google_fakes`), the client libraries pointed at them."""
    yield from fake_google_cloud(monkeypatch)


@pytest.fixture(scope="module")
def cfg():
    return load_config("vertex", "tiny", TARGET)


@pytest.fixture(scope="module")
def template(cfg, tmp_path_factory):
    """The pipeline compiled for `cfg`: its path and its spec."""
    path = compile_pipeline(cfg, str(tmp_path_factory.mktemp("template") / "align_pipeline.yaml"))
    with open(path) as f:
        return path, yaml.safe_load(f)


def anonymous():
    from google.auth.credentials import AnonymousCredentials

    return AnonymousCredentials()


def caching(pipeline_spec: dict) -> list[dict]:
    """Every task's caching options."""
    components = [pipeline_spec["root"], *pipeline_spec["components"].values()]
    return [t.get("cachingOptions") for c in components for t in c.get("dag", {}).get("tasks", {}).values()]


def test_submit_sends_one_pipeline_job_compiled_for_the_config(fake, cfg):
    job = vertex.JobSpec(
        display_name="align-test",
        parameter_values={"overrides": "train.steps=3"},
        labels={"team": "vision", "trigger": "manual"},
        enable_caching=False,
        network="projects/123/global/networks/vpc",
    )
    submitted = vertex.submit_pipeline_job(cfg, job, credentials=anonymous())

    bucket_check = ("GET", f"/storage/v1/b/{BUCKET}")  # the SDK's, before every job; it never creates one
    assert fake.calls() == [bucket_check, bucket_check, ("POST", f"/v1/{LOCATION}/pipelineJobs")]
    create = fake.requests[-1]
    job_id = create.query["pipelineJobId"][0]
    assert re.fullmatch(r"align-\d{14}", job_id)
    assert {k: v for k, v in create.body.items() if k != "pipelineSpec"} == {
        "displayName": "align-test",
        "runtimeConfig": {
            "gcsOutputDirectory": f"gs://{BUCKET}/root",
            "parameterValues": {"overrides": "train.steps=3"},
        },
        "labels": {"team": "vision", "trigger": "manual"},
        "serviceAccount": RUNNER_SA,
        "network": "projects/123/global/networks/vpc",
    }
    spec = create.body["pipelineSpec"]
    assert spec["root"]["inputDefinitions"]["parameters"]["config_json"]["defaultValue"] == cfg.to_json()
    assert set(map(json.dumps, caching(spec))) == {'{"enableCache": false}'}
    assert submitted.resource_name == f"{CREATED}/pipelineJobs/{job_id}"
    url = f"{CONSOLE}/{REGION}/pipelines/runs/{job_id}?project={PROJECT}"
    assert vertex.console_url(cfg, submitted.resource_name) == url


@pytest.mark.parametrize(
    ("url", "download"),
    [
        (AR_TAG_URL, f"/artifact-registry/{AR_TAG_URL.removeprefix('https://')}"),
        (AR_DIGEST_URL, f"/artifact-registry/{AR_DIGEST_URL.removeprefix('https://')}"),
        (f"gs://{BUCKET}/templates/align.yaml", f"/download/storage/v1/b/{BUCKET}/o/templates/align.yaml"),
    ],
)
def test_submit_reads_a_published_template(fake, cfg, template, url, download):
    fake.files[url] = yaml.safe_dump(template[1]).encode()
    vertex.submit_pipeline_job(cfg, vertex.JobSpec(template=url), credentials=anonymous())

    assert ("GET", download) in fake.calls()
    body = fake.only("POST", "/pipelineJobs").body
    assert body["pipelineSpec"] == template[1]
    assert body["runtimeConfig"] == {"gcsOutputDirectory": f"gs://{BUCKET}/root"}
    # Vertex AI keeps a template's origin for registry (https) templates only.
    assert body.get("templateUri") == (url if url.startswith("https://") else None)


def test_submit_joins_a_vertex_experiment(fake, cfg, template):
    job = vertex.JobSpec(template=template[0])
    submitted = vertex.submit_pipeline_job(cfg, job, experiment="align-exp", credentials=anonymous())

    calls = fake.calls()
    experiment = ("GET", f"/v1/{LOCATION}/metadataStores/default/contexts/align-exp")
    assert calls.index(experiment) < calls.index(("POST", f"/v1/{LOCATION}/pipelineJobs"))
    # Then the SDK waits for the job's run context (here at once) and adds it to the experiment.
    assert calls[-2:] == [
        ("GET", f"/v1/{submitted.resource_name}"),
        ("POST", f"/v1/{CONTEXTS}/align-exp:addContextChildren"),
    ]
    assert fake.requests[-1].body == {"childContexts": [f"{CONTEXTS}/{submitted.job_id}"]}


def test_schedule_sends_the_exact_schedule(fake, cfg, template):
    job = vertex.JobSpec(template=template[0], display_name="align-weekly", labels={"team": "vision"})
    schedule = vertex.CronSchedule.parse("0 3 * * 1", "Europe/Paris", start_time="2030-01-06T00:00:00+01:00")
    created = vertex.schedule_pipeline_job(cfg, job, schedule, credentials=anonymous())

    assert fake.calls() == [("POST", f"/v1/{LOCATION}/schedules")]  # no job now, so no bucket check
    body = fake.requests[0].body
    # allow_queueing=False is the proto default, which a JSON body leaves out.
    assert {k: v for k, v in body.items() if k != "createPipelineJobRequest"} == {
        "displayName": "align-weekly",
        "cron": "TZ=Europe/Paris 0 3 * * 1",
        "startTime": "2030-01-05T23:00:00Z",
        "maxConcurrentRunCount": "1",
    }
    assert body["createPipelineJobRequest"] == {
        "parent": LOCATION,
        "pipelineJob": {
            "runtimeConfig": {"gcsOutputDirectory": f"gs://{BUCKET}/root"},
            "labels": {"team": "vision"},
            "serviceAccount": RUNNER_SA,
            "pipelineSpec": template[1],
        },
    }
    assert created.resource_name == f"{CREATED}/schedules/42"
    assert vertex.console_url(cfg, created.resource_name) == (
        f"{CONSOLE}/{REGION}/pipelines/schedules/42?project={PROJECT}"
    )


def test_kubeflow_recurring_run_has_a_six_field_cron(fake, cfg, template):
    job = vertex.JobSpec(template=template[0], parameter_values={"experiment": "paper"}, enable_caching=False)
    run = vertex.schedule_kubeflow_run(
        cfg, job, vertex.CronSchedule.parse("0 3 * * 1"), fake.url, experiment="align-weekly"
    )

    assert fake.calls() == [
        ("GET", "/apis/v2beta1/healthz"),
        ("GET", "/apis/v2beta1/experiments"),  # not there yet: created
        ("POST", "/apis/v2beta1/experiments"),
        ("POST", "/apis/v2beta1/recurringruns"),
    ]
    assert fake.requests[2].body == {"display_name": "align-weekly", "namespace": ""}
    body = fake.requests[3].body
    assert {k: v for k, v in body.items() if k != "pipeline_spec"} == {
        "display_name": "align",
        "experiment_id": "exp-1",
        "mode": "ENABLE",
        "max_concurrency": 1,
        "no_catchup": True,
        "trigger": {"cron_schedule": {"cron": "0 0 3 * * 1"}},
        "runtime_config": {"parameters": {"experiment": "paper"}, "pipeline_root": f"gs://{BUCKET}/root"},
    }
    # Every task's caching off, inside the exit handler too (false is the proto default, left out).
    assert set(map(json.dumps, caching(body["pipeline_spec"]))) == {"{}"}
    assert run.recurring_run_id == "rr-1"


def test_cli_submit_prints_the_job_and_its_console_page(fake, template, capsys):
    argv = ["submit", "--template", template[0], "--set", TARGET[-1], "--project", PROJECT]
    argv += ["--region", REGION, "--pipeline-root", f"gs://{BUCKET}/cli", "--service-account", "cli@x.com"]
    argv += "--label team=vision --param overrides=train.steps=3 --no-cache --display-name x".split()
    assert cli.main(argv) == 0

    body = fake.only("POST", "/pipelineJobs").body
    assert (body["displayName"], body["labels"]) == ("x", {"team": "vision"})
    assert body["serviceAccount"] == "cli@x.com"
    assert body["runtimeConfig"] == {
        "gcsOutputDirectory": f"gs://{BUCKET}/cli",
        "parameterValues": {"overrides": "train.steps=3"},
    }
    assert set(map(json.dumps, caching(body["pipelineSpec"]))) == {'{"enableCache": false}'}
    job_id = fake.only("POST", "/pipelineJobs").query["pipelineJobId"][0]
    assert capsys.readouterr().out.splitlines() == [
        f"{CREATED}/pipelineJobs/{job_id}",
        f"{CONSOLE}/{REGION}/pipelines/runs/{job_id}?project={PROJECT}",
    ]


def _edited_template(template, tmp_path, old: str, new: str) -> str:
    path = tmp_path / "edited.yaml"
    path.write_text(open(template[0]).read().replace(old, new))
    return str(path)


def test_submit_refuses_a_template_that_cannot_run_where_it_is_sent(fake, template, tmp_path):
    """A compiled template keeps its project and images: `submit --template` checks them
    against its own flags before anything is sent."""
    flags = ["--tracking-uri", "https://mlflow.example.org", "--pipeline-root", f"gs://{BUCKET}/root"]
    data_image = TARGET[4].split("=", 1)[1]
    unqualified = _edited_template(template, tmp_path, f"image: {data_image}", "image: alignpipe-data:latest")
    cases = [
        (template[0], ["--project", "other-proj"], f"runner.gcp_project={PROJECT!r}, not 'other-proj'"),
        (
            unqualified,
            ["--project", PROJECT],
            "runs image 'alignpipe-data:latest', which is not registry-qualified",
        ),
        (
            template[0],
            ["--project", PROJECT, "--set", f"runner.data_image={data_image[:-7]}v2"],
            f"runs runner.data_image={data_image!r}, not",
        ),
    ]
    for path, args, refusal in cases:
        with pytest.raises(AlignPipeError, match=re.escape(refusal)):
            with vertex.template_path(
                cli._cloud_config(
                    cli.build_parser().parse_args(
                        ["submit", "--env=vertex", "--template", path, *flags, *args]
                    )
                ),
                path,
            ):
                pass
    assert fake.calls() == []
    args = ["submit", "--env=vertex", "--template", template[0], *flags, "--project", "other-proj"]
    _one_clear_error(run_cli(*args, timeout=60), "runner.gcp_project", "other-proj", "compile it again")


@pytest.mark.parametrize("kubeflow", [False, True])
def test_cli_schedule_prints_what_it_created(fake, template, capsys, kubeflow):
    fake.kfp_experiments.append({"display_name": "Default", "experiment_id": "default-id"})
    argv = ["schedule", "--template", template[0], "--cron", "0 3 * * 1", *[f"--set={t}" for t in TARGET]]
    assert cli.main(argv + (["--kfp-host", fake.url] if kubeflow else ["--time-zone", "Europe/Paris"])) == 0

    if kubeflow:
        body = fake.only("POST", "/recurringruns").body
        assert body["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * 1"
        assert body["experiment_id"] == "default-id"  # Kubeflow's own, found
        assert capsys.readouterr().out == "rr-1\n"  # kfp's own links went to stderr
    else:
        assert fake.only("POST", "/schedules").body["cron"] == "TZ=Europe/Paris 0 3 * * 1"
        assert capsys.readouterr().out.splitlines() == [
            f"{CREATED}/schedules/42",
            f"{CONSOLE}/{REGION}/pipelines/schedules/42?project={PROJECT}",
        ]


@pytest.mark.parametrize(
    ("cron", "zone", "vertex_cron", "kubeflow_cron"),
    [
        ("0 3 * * 1", "UTC", "TZ=UTC 0 3 * * 1", "0 0 3 * * 1"),
        (" */15  0-6 1,15 JAN-MAR ? ", "America/New_York", "TZ=America/New_York */15 0-6 1,15 JAN-MAR ?",
         "0 */15 0-6 1,15 JAN-MAR ?"),
    ],
)  # fmt: skip
def test_cron_in_each_schedulers_form(cron, zone, vertex_cron, kubeflow_cron):
    schedule = vertex.CronSchedule.parse(cron, zone)
    assert (schedule.vertex_cron, schedule.kubeflow_cron) == (vertex_cron, kubeflow_cron)
    assert len(schedule.kubeflow_cron.split()) == 6


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("0 3 * *",), "not a 5-field cron"),
        (("0 0 3 * * 1",), "not a 5-field cron"),
        (("0 3 * * 1;",), "not a 5-field cron"),
        (("TZ=UTC 0 3 * * 1",), "--time-zone instead"),
        (("0 3 * * 1", "Mars/Olympus"), "not an IANA time zone"),
        (("0 3 * * 1", "UTC", "2030-01-01"), "--start-time '2030-01-01' is not a time with an offset"),
        (("0 3 * * 1", "UTC", "2030-01-02T00:00Z", "2030-01-01T00:00Z"), "is not after --start-time"),
    ],
)
def test_bad_schedules_are_refused(args, message):
    with pytest.raises(AlignPipeError, match=re.escape(message)):
        vertex.CronSchedule.parse(*args)


def test_bad_job_options_are_refused(fake, cfg, template):
    assert vertex.key_values(["overrides=a=b"], "--param") == {"overrides": "a=b"}
    with pytest.raises(AlignPipeError, match="--label 'team' is not of the form key=value"):
        vertex.key_values(["team"], "--label")
    with pytest.raises(AlignPipeError, match="label Team='x' is not a Vertex AI label"):
        vertex.JobSpec(labels={"Team": "x"})
    with pytest.raises(AlignPipeError, match="runner.gcp_region='mars-north1' is not a Vertex AI region"):
        vertex.build_pipeline_job(cfg.replace(runner__gcp_region="mars-north1"), vertex.JobSpec(), "x.yaml")
    with pytest.raises(AlignPipeError, match="tracking.tracking_uri='' is not an MLflow server"):
        vertex.submit_pipeline_job(load_config("local", "tiny", TARGET[:-1]), vertex.JobSpec())
    with pytest.raises(AlignPipeError, match="pipeline parameter stepz is not found"):
        job = vertex.JobSpec(template=template[0], parameter_values={"stepz": "3"})
        vertex.submit_pipeline_job(cfg, job, credentials=anonymous())
    with pytest.raises(AlignPipeError, match="--kfp-host takes a local template file"):
        vertex.schedule_kubeflow_run(
            cfg, vertex.JobSpec(template=AR_TAG_URL), vertex.CronSchedule("0 3 * * 1"), ""
        )
    with pytest.raises(AlignPipeError, match="give the cron in UTC"):
        paris = vertex.CronSchedule.parse("0 3 * * 1", "Europe/Paris")
        vertex.schedule_kubeflow_run(cfg, vertex.JobSpec(template=template[0]), paris, fake.url)
    assert fake.calls() == []


def test_no_credentials_is_one_clear_error(fake, cfg, template, monkeypatch, tmp_path):
    from google.auth.compute_engine import _metadata
    from google.cloud.aiplatform import initializer

    monkeypatch.setattr(initializer, "global_config", initializer._Config())  # no credentials
    monkeypatch.setattr(_metadata, "_NO_GCE_CHECK", True)  # not on Compute Engine: no metadata server
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))  # no gcloud login
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    with pytest.raises(AlignPipeError, match="no Google Cloud credentials .*gcloud auth application-default"):
        vertex.submit_pipeline_job(cfg, vertex.JobSpec(template=template[0]))
    assert fake.calls() == []


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["submit"], ("runner.gcp_project", "--project")),
        (["submit", "--project", PROJECT, "--pipeline-root", "/tmp/root"], ("runner.pipeline_root", "gs://")),
        (["schedule", "--cron", "0 3 * *"], ("--cron", "5-field")),
        (["schedule", "--cron", "0 3 * * 1", "--time-zone", "Europe/Pariss"], ("Europe/Pariss", "IANA")),
    ],
)
def test_cli_input_mistakes_are_one_clear_error(args, fragments):
    _one_clear_error(run_cli(*args, "--tracking-uri", "https://mlflow.example.org", timeout=60), *fragments)


def test_cli_starts_without_the_cloud_libraries():
    code = "import sys, pipelines.cli; print(sorted({'kfp', 'google.cloud.aiplatform'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"
    assert "--kfp-host" in run_cli("schedule", "--help", timeout=60).stdout


def test_cli_publish_uploads_the_template_with_its_tags(fake, cfg, template, capsys):
    with open(template[0], "rb") as f:
        content = f.read()
    tags = ["abc1234", "", "v1.0.0", "latest", "abc1234"]  # CI passes an empty tag on branch builds
    argv = ["publish", "--template", template[0], "--host", f"{KFP_REPOSITORY}/"]
    assert cli.main(argv + [f"--tag={tag}" for tag in tags]) == 0

    upload_path = f"/artifact-registry/{KFP_REPOSITORY.removeprefix('https://')}"
    # The application default credentials fetch a token first, then the one multipart upload.
    assert fake.calls() == [("POST", "/token"), ("POST", upload_path)]
    assert fake.requests[0].form == {
        "grant_type": "refresh_token",
        "client_id": "fake-client",
        "client_secret": "fake-secret",
        "refresh_token": "fake-refresh-token",
    }
    upload = fake.requests[1]
    assert upload.headers["authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert upload.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert (upload.query, upload.body) == ({}, None)
    assert upload.form == {"tags": "abc1234,v1.0.0,latest"}
    assert upload.files == {"content": ("align_pipeline.yaml", content)}
    assert capsys.readouterr().out.splitlines() == [
        "align",
        f"sha256:{hashlib.sha256(content).hexdigest()}",
        f"{KFP_REPOSITORY}/align/abc1234",
        f"{KFP_REPOSITORY}/align/v1.0.0",
        f"{KFP_REPOSITORY}/align/latest",
    ]

    # What `submit --template URL` then reads is what was compiled.
    url = f"{KFP_REPOSITORY}/align/v1.0.0"
    vertex.submit_pipeline_job(cfg, vertex.JobSpec(template=url), credentials=anonymous())
    body = fake.only("POST", "/pipelineJobs").body
    assert (body["templateUri"], body["pipelineSpec"]) == (url, template[1])


def test_publish_without_tags_names_the_version(fake, template):
    published = publish.publish_template(template[0], KFP_REPOSITORY)

    upload = fake.only("POST", f"/{TEMPLATES_REPO}")
    assert (upload.form, list(upload.files)) == ({}, ["content"])  # no tags field at all
    assert published.version.startswith("sha256:")
    assert published.urls == [f"{KFP_REPOSITORY}/align/{published.version}"]


def _one_error_line(capsys, *fragments: str) -> None:
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("alignpipe: error: "), err
    assert all(fragment in err for fragment in fragments), err


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--template", "nowhere.yaml"], ("template file 'nowhere.yaml' does not exist",)),
        (["--template", f"{ROOT}/pyproject.toml"], ("is not a compiled kfp pipeline", "alignpipe compile")),
        (["--host", "http://127.0.0.1:8080/my-proj/t"], ("is not an Artifact Registry KFP repository URL",)),
        (["--host", f"https://{REGION}-docker.pkg.dev/{PROJECT}/align"], ("https://REGION-kfp.pkg.dev/",)),
        (["--tag", "release/1.0"], ("--tag 'release/1.0' is not a template tag",)),
        (["--tag", "sha256:ab"], ("--tag 'sha256:ab' is not a template tag",)),
    ],
)  # fmt: skip
def test_cli_publish_mistakes_are_one_clear_error_before_any_request(fake, template, capsys, args, fragments):
    argv = ["publish", "--template", template[0], "--host", KFP_REPOSITORY, "--tag", "v1", *args]
    assert cli.main(argv) == 2
    _one_error_line(capsys, *fragments)
    assert fake.calls() == []


def test_cli_publish_refusals_are_one_clear_error(fake, template, capsys, monkeypatch, tmp_path):
    missing = f"https://{REGION}-kfp.pkg.dev/{PROJECT}/no-such-templates"
    assert cli.main(["publish", "--template", template[0], "--host", missing]) == 2
    _one_error_line(capsys, "Artifact Registry refused the template: 404 Not Found", "no fake for POST")

    from google.auth.compute_engine import _metadata

    monkeypatch.setattr(_metadata, "_NO_GCE_CHECK", True)  # not on Compute Engine: no metadata server
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))  # no gcloud login
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS")
    assert cli.main(["publish", "--template", template[0], "--host", KFP_REPOSITORY]) == 2
    _one_error_line(capsys, "no Google Cloud credentials", "gcloud auth application-default login")
    assert fake.calls() == [
        ("POST", "/token"),
        ("POST", f"/artifact-registry/{missing.removeprefix('https://')}"),
    ]
