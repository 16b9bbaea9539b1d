"""Submitting and scheduling the ALIGN pipeline on Vertex AI Pipelines, or on a Kubeflow host.

A job is the compiled pipeline (a local YAML, a gs:// URI or an Artifact Registry URL; by
default the pipeline compiled for the config at hand) with its run's parameter values, labels
and caching choice. Where it runs comes from the config: `runner.gcp_project`,
`runner.gcp_region`, `runner.pipeline_root` (a gs:// folder) and `runner.service_account`.

A template published to Artifact Registry (`pipelines/publish.py`) is taken as
`https://REGION-kfp.pkg.dev/PROJECT/REPO/NAME/TAG`.

Cron formats differ between the two schedulers:

- Vertex AI takes the 5 standard fields (minute hour day-of-month month day-of-week) with a
  `TZ=<IANA zone> ` prefix: `0 3 * * 1` in Europe/Paris is `TZ=Europe/Paris 0 3 * * 1`.
- Kubeflow's scheduled workflows parse 6 fields, seconds first (robfig/cron), so a seconds
  field of `0` is prepended: `0 3 * * 1` becomes `0 0 3 * * 1`. They have no time-zone prefix
  and fire in the time zone of the scheduledworkflow controller (UTC unless it was configured
  otherwise), so only UTC is accepted there.

The Google Cloud and kfp client libraries are imported inside the functions that use them:
the CLI starts without them.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import sys
import tempfile
import zoneinfo
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import yaml

from alignpipe.config import Config
from alignpipe.errors import AlignPipeError

CONSOLE_URL = (
    "https://console.cloud.google.com/vertex-ai/locations/{region}/pipelines/{kind}/{id}?project={project}"
)
CRON_FIELD = re.compile(r"[0-9A-Za-z*?,/#-]+")
# Vertex AI labels: lowercase letters, digits, '_' and '-', at most 63 characters; keys start with a letter.
LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
KUBEFLOW_DEFAULT_EXPERIMENT = "Default"  # the experiment every Kubeflow deployment starts with


@dataclass(frozen=True)
class JobSpec:
    """One pipeline job, beyond the config: the template and what each of its runs is given.

    Attributes:
        template: a local YAML file, a gs:// URI or an Artifact Registry URL
            (`https://REGION-kfp.pkg.dev/PROJECT/REPO/NAME/TAG` or `.../sha256:DIGEST`);
            "" compiles the pipeline for the config into a temporary file.
        display_name: the job's (and the schedule's) name in the console.
        parameter_values: pipeline parameters by name (`components.parameters`); the template's
            defaults fill the others.
        labels: Vertex AI labels of the job.
        enable_caching: False turns caching off for every task; None keeps the template's.
        network: the VPC network to peer with, `projects/NUMBER/global/networks/NAME`; "" = none.
    """

    template: str = ""
    display_name: str = "align"
    parameter_values: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    enable_caching: bool | None = None
    network: str = ""

    def __post_init__(self) -> None:
        for key, value in self.labels.items():
            if not LABEL_KEY.fullmatch(key) or not LABEL_VALUE.fullmatch(value):
                raise AlignPipeError(
                    f"label {key}={value!r} is not a Vertex AI label: keys and values take lowercase "
                    "letters, digits, '_' and '-' (at most 63 characters), keys start with a letter"
                )


@dataclass(frozen=True)
class CronSchedule:
    """When a scheduled pipeline runs: a 5-field cron in a time zone, between optional times.

    Build it with `CronSchedule.parse`, which validates every part.
    """

    cron: str  # minute hour day-of-month month day-of-week
    time_zone: str = "UTC"  # an IANA zone name
    start_time: str = ""  # RFC 3339 in UTC ("2030-01-05T23:00:00Z"); "" = from now
    end_time: str = ""  # RFC 3339 in UTC; "" = no end

    @classmethod
    def parse(
        cls, cron: str, time_zone: str = "UTC", start_time: str = "", end_time: str = ""
    ) -> CronSchedule:
        """Validates and normalises a schedule given as text.

        Raises:
            AlignPipeError: a cron without exactly 5 fields (or with its own TZ= prefix), an
                unknown time zone, or a start / end time that is not an ISO 8601 time with an offset.
        """
        fields = cron.split()
        if fields and fields[0].startswith(("TZ=", "CRON_TZ=")):
            raise AlignPipeError(f"--cron {cron!r} carries a time zone; give it with --time-zone instead")
        if len(fields) != 5 or not all(CRON_FIELD.fullmatch(f) for f in fields):
            raise AlignPipeError(
                f"--cron {cron!r} is not a 5-field cron expression "
                "(minute hour day-of-month month day-of-week, e.g. '0 3 * * 1' for Mondays at 03:00)"
            )
        try:
            zoneinfo.ZoneInfo(time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise AlignPipeError(
                f"--time-zone {time_zone!r} is not an IANA time zone "
                "(e.g. UTC, Europe/Paris, America/New_York)"
            ) from None
        start, end = _utc_time(start_time, "--start-time"), _utc_time(end_time, "--end-time")
        if start and end and end <= start:
            raise AlignPipeError(f"--end-time {end_time!r} is not after --start-time {start_time!r}")
        return cls(" ".join(fields), time_zone, start, end)

    @property
    def vertex_cron(self) -> str:
        """Vertex AI's form: `TZ=<zone> <5 fields>`."""
        return f"TZ={self.time_zone} {self.cron}"

    @property
    def kubeflow_cron(self) -> str:
        """Kubeflow's form: 6 fields, a seconds field of 0 first."""
        return f"0 {self.cron}"


def _utc_time(text: str, flag: str) -> str:
    """An ISO 8601 time with an offset, as RFC 3339 in UTC ("" stays "")."""
    if not text:
        return ""
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise AlignPipeError(f"{flag} {text!r} is not a time with an offset, e.g. 2030-01-06T03:00:00+01:00")
    return when.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def key_values(items: Iterable[str], flag: str) -> dict[str, str]:
    """`["a=1", "b=x=y"]` -> `{"a": "1", "b": "x=y"}`; names the flag of a malformed item."""
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise AlignPipeError(f"{flag} {item!r} is not of the form key=value")
        pairs[key.strip()] = value
    return pairs


def check_shared_tracking(cfg: Config) -> None:
    """Raises `AlignPipeError` unless `cfg`'s tasks, each on its own machine, share one MLflow server."""
    if not cfg.tracking.tracking_uri.startswith(("http://", "https://")):
        raise AlignPipeError(
            f"tracking.tracking_uri={cfg.tracking.tracking_uri!r} is not an MLflow server: pass "
            "--tracking-uri https://... (the pipeline's tasks run on separate machines, and each would "
            "see its own local store)"
        )


def check_vertex_target(cfg: Config) -> None:
    """Raises `AlignPipeError` naming the config key when Vertex AI cannot run a job for `cfg`."""
    r = cfg.runner
    if not r.gcp_project:
        raise AlignPipeError(
            "runner.gcp_project is not set: pass --project PROJECT (or --set runner.gcp_project=PROJECT), "
            "the Google Cloud project the pipeline job runs in"
        )
    if not r.pipeline_root.startswith("gs://") or len(r.pipeline_root) <= len("gs://"):
        raise AlignPipeError(
            f"runner.pipeline_root={r.pipeline_root!r} is not a gs:// folder: pass --pipeline-root "
            "gs://BUCKET/PATH (or --set runner.pipeline_root=...), where the pipeline's artifacts go"
        )


def check_template_target(cfg: Config, template: str) -> None:
    """Raises `AlignPipeError` when the local `template` cannot run where `cfg` sends it.

    A template carries the config it was compiled for (its `config_json` default): its project
    must be `runner.gcp_project`, every task's image must be registry-qualified, and an image
    that `cfg` names (`--set runner.data_image=...`) must be the one the template runs.
    """
    from alignpipe.config.validation import is_registry_image, vertex_images

    with open(template) as f:
        spec = next(yaml.safe_load_all(f))
    try:
        compiled = Config.from_json(
            spec["root"]["inputDefinitions"]["parameters"]["config_json"]["defaultValue"]
        )
        executors = spec["deploymentSpec"]["executors"].items()
    except (KeyError, TypeError, ValueError, AlignPipeError):
        raise AlignPipeError(
            f"template {template!r} is not an alignpipe pipeline (`alignpipe compile`)"
        ) from None
    if compiled.runner.gcp_project != cfg.runner.gcp_project:
        raise AlignPipeError(
            f"template {template!r} was compiled for runner.gcp_project={compiled.runner.gcp_project!r}, "
            f"not {cfg.runner.gcp_project!r} (--project): compile it again for this project"
        )
    for name, executor in executors:
        image = executor.get("container", {}).get("image", "")
        if image and not is_registry_image(image):
            raise AlignPipeError(
                f"template {template!r}: task {name} runs image {image!r}, which is not registry-qualified "
                "(REGION-docker.pkg.dev/PROJECT/REPO/NAME:TAG): compile it again with the pushed images"
            )
    given, built = vertex_images(cfg), vertex_images(compiled)
    for key, image in given.items():
        if is_registry_image(image) and key in built and built[key] != image:
            raise AlignPipeError(
                f"template {template!r} runs {key}={built[key]!r}, not {image!r} (--set {key}): "
                "compile it again with that image"
            )


@contextlib.contextmanager
def template_path(cfg: Config, template: str) -> Iterator[str]:
    """Yields `template`, or the pipeline compiled for `cfg` into a temporary file when it is "".

    A template brings its own config; one compiled here runs `cfg`, which must name a shared
    MLflow server.
    """
    if template:
        if "://" not in template and not os.path.isfile(template):
            raise AlignPipeError(f"template file {template!r} does not exist")
        if "://" not in template:
            check_template_target(cfg, template)
        yield template
        return
    check_shared_tracking(cfg)
    from pipelines.align_pipeline import compile_pipeline

    with tempfile.TemporaryDirectory(prefix="alignpipe-template-") as folder:
        yield compile_pipeline(cfg, os.path.join(folder, "align_pipeline.yaml"))


def build_pipeline_job(cfg: Config, job: JobSpec, template: str, credentials=None):
    """The `aiplatform.PipelineJob` of `job` from the template file or URL `template`, not yet sent.

    Args:
        cfg: where it runs (`runner.gcp_*`, `runner.pipeline_root`).
        job: what it runs.
        template: a local path, gs:// URI or Artifact Registry URL (`job.template` resolved).
        credentials: Google credentials; None = the application default credentials.

    Raises:
        AlignPipeError: the template cannot be read, a parameter is unknown to it, the region is
            not a Vertex AI region, or there are no credentials.
    """
    from google.api_core import exceptions as api_exceptions
    from google.auth import exceptions as auth_exceptions
    from google.cloud import aiplatform
    from google.cloud.aiplatform import utils
    from google.cloud.aiplatform.constants import base as aiplatform_constants

    check_vertex_target(cfg)
    try:
        utils.validate_region(cfg.runner.gcp_region)
    except ValueError:
        raise AlignPipeError(
            f"runner.gcp_region={cfg.runner.gcp_region!r} is not a Vertex AI region; choose one of "
            f"{sorted(aiplatform_constants.SUPPORTED_REGIONS)}"
        ) from None
    try:
        return aiplatform.PipelineJob(
            display_name=job.display_name,
            template_path=template,
            pipeline_root=cfg.runner.pipeline_root,
            parameter_values=dict(job.parameter_values),
            enable_caching=job.enable_caching,
            labels=dict(job.labels) or None,
            project=cfg.runner.gcp_project,
            location=cfg.runner.gcp_region,
            credentials=credentials,
        )
    except auth_exceptions.DefaultCredentialsError as e:
        raise AlignPipeError(
            f"no Google Cloud credentials ({e}); run `gcloud auth application-default login`"
        ) from None
    except (ValueError, OSError, api_exceptions.GoogleAPICallError) as e:
        # ValueError: a parameter the template does not declare; OSError / API errors: unreadable template.
        raise AlignPipeError(f"cannot build a pipeline job from {template}: {e}") from None


def submit_pipeline_job(cfg: Config, job: JobSpec, experiment: str = "", credentials=None):
    """Creates one Vertex AI pipeline job of `job` and returns it without waiting for it.

    With `experiment`, the job joins that Vertex AI experiment (created if missing); the SDK then
    waits until the job's run context exists, usually until the job starts.

    Returns:
        The submitted `aiplatform.PipelineJob` (`resource_name`, `job_id`).

    Raises:
        AlignPipeError: as `build_pipeline_job`, or Vertex AI refused the job.
    """
    from google.api_core import exceptions as api_exceptions

    check_vertex_target(cfg)  # before compiling
    with template_path(cfg, job.template) as template:
        pipeline_job = build_pipeline_job(cfg, job, template, credentials)
    try:
        pipeline_job.submit(
            service_account=cfg.runner.service_account or None,
            network=job.network or None,
            experiment=experiment or None,
        )
    except api_exceptions.GoogleAPICallError as e:
        raise AlignPipeError(f"Vertex AI refused the pipeline job: {e}") from None
    return pipeline_job


def schedule_pipeline_job(cfg: Config, job: JobSpec, schedule: CronSchedule, credentials=None):
    """Creates a Vertex AI schedule that starts `job` on `schedule`.

    At most one run at a time: a run due while the last one still runs is skipped, not queued.

    Returns:
        The created `aiplatform.PipelineJobSchedule` (`resource_name`).

    Raises:
        AlignPipeError: as `build_pipeline_job`, or Vertex AI refused the schedule.
    """
    from google.api_core import exceptions as api_exceptions

    check_vertex_target(cfg)  # before compiling
    with template_path(cfg, job.template) as template:
        pipeline_job = build_pipeline_job(cfg, job, template, credentials)
    try:
        return pipeline_job.create_schedule(
            cron=schedule.vertex_cron,
            display_name=job.display_name,
            start_time=schedule.start_time or None,
            end_time=schedule.end_time or None,
            max_concurrent_run_count=1,
            allow_queueing=False,
            service_account=cfg.runner.service_account or None,
            network=job.network or None,
        )
    except api_exceptions.GoogleAPICallError as e:
        raise AlignPipeError(f"Vertex AI refused the schedule: {e}") from None


def schedule_kubeflow_run(cfg: Config, job: JobSpec, schedule: CronSchedule, host: str, experiment: str = ""):
    """Creates a Kubeflow recurring run of `job` on the Kubeflow Pipelines API at `host`.

    The recurring run joins `experiment` (created if missing; Kubeflow's "Default" when empty),
    runs at most once at a time and does not catch up on runs missed while it was paused.

    Returns:
        The created `kfp_server_api.V2beta1RecurringRun` (`recurring_run_id`).

    Raises:
        AlignPipeError: a template that is not a local file, Vertex-only options (labels,
            network, a time zone other than UTC), or the host refused the request.
    """
    if job.template and "://" in job.template:
        raise AlignPipeError(f"--kfp-host takes a local template file, not {job.template!r}")
    if job.labels or job.network:
        raise AlignPipeError(
            "--label and --network are Vertex AI options; Kubeflow recurring runs take neither"
        )
    if schedule.time_zone not in ("UTC", "Etc/UTC"):
        raise AlignPipeError(
            f"--time-zone {schedule.time_zone!r}: Kubeflow schedules fire in the time zone of its "
            "scheduledworkflow controller; give the cron in UTC"
        )
    with contextlib.ExitStack() as stack:
        template = stack.enter_context(template_path(cfg, job.template))
        if job.enable_caching is not None:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="alignpipe-template-"))
            template = with_caching(template, job.enable_caching, os.path.join(folder, "align_pipeline.yaml"))
        return _create_recurring_run(cfg, job, schedule, host, experiment, template)


def _create_recurring_run(
    cfg: Config, job: JobSpec, schedule: CronSchedule, host: str, experiment: str, template: str
):
    import kfp
    import kfp_server_api
    import urllib3

    try:
        # kfp prints links on stdout, which is the created resource's alone.
        with contextlib.redirect_stdout(sys.stderr):
            client = kfp.Client(host=host)
            experiment_id = client.create_experiment(experiment or KUBEFLOW_DEFAULT_EXPERIMENT).experiment_id
            return client.create_recurring_run(
                experiment_id=experiment_id,
                job_name=job.display_name,
                cron_expression=schedule.kubeflow_cron,
                start_time=schedule.start_time or None,
                end_time=schedule.end_time or None,
                max_concurrency=1,
                no_catchup=True,
                params=dict(job.parameter_values),
                pipeline_package_path=template,
                pipeline_root=cfg.runner.pipeline_root or None,
            )
    except kfp_server_api.ApiException as e:
        raise AlignPipeError(f"Kubeflow at {host} refused the recurring run: {e.status} {e.reason}") from None
    except urllib3.exceptions.HTTPError as e:
        raise AlignPipeError(f"Kubeflow at {host} is unreachable: {e}") from None


def with_caching(template: str, enable_caching: bool, path: str) -> str:
    """Writes to `path` the local `template` with caching set for every task; returns `path`.

    Every task means those of nested DAGs too (the exit handler's): `kfp.Client`'s own
    `enable_caching` reaches only the root DAG's tasks, where this pipeline has two of its seven.
    """
    with open(template) as f:
        documents = list(yaml.safe_load_all(f))
    spec = documents[0]  # then platform specs, if any
    for component in [spec["root"], *spec.get("components", {}).values()]:
        for task in component.get("dag", {}).get("tasks", {}).values():
            task.setdefault("cachingOptions", {})["enableCache"] = enable_caching
    with open(path, "w") as f:
        yaml.safe_dump_all(documents, f, sort_keys=False)
    return path


def console_url(cfg: Config, resource_name: str) -> str:
    """The Cloud console page of a pipeline job or schedule, from its resource name."""
    kind, resource_id = resource_name.split("/")[-2:]
    return CONSOLE_URL.format(
        region=cfg.runner.gcp_region,
        kind={"pipelineJobs": "runs", "schedules": "schedules"}[kind],
        id=resource_id,
        project=cfg.runner.gcp_project,
    )
