"""infra/terraform, checked offline: it parses, its variables add up, its policies hold, and its
outputs are the config keys alignpipe needs. No provider is downloaded and nothing is applied."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from alignpipe.config import beam_pipeline_args, load_config
from tests.cloud.mlflow_server import terraform_artifact_args
from tests.infra import terraform_policy as policy

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "infra" / "terraform"
TF_FILES = sorted(TERRAFORM.glob("*.tf"))

# The only roles granted on the whole project; every other grant is on one resource.
PROJECT_ROLES = {
    "roles/aiplatform.user",
    "roles/dataflow.developer",
    "roles/dataflow.worker",
    "roles/logging.logWriter",
    "roles/cloudsql.client",
}
# alignpipe config key -> the output that gives its value.
CONFIG_OUTPUTS = {
    "runner.gcp_project": "project_id",
    "runner.gcp_region": "region",
    "runner.pipeline_root": "pipeline_root",
    "runner.service_account": "pipelines_service_account",
    "runner.data_image": "data_image",
    "runner.trainer_image": "trainer_image",
    "runner.trainer_tpu_image": "trainer_tpu_image",
    "runner.trainer_gpu_image": "trainer_gpu_image",
    "register.serving_image": "serving_image",
    "tracking.tracking_uri": "mlflow_tracking_uri",
    "tracking.auth": "mlflow_auth",  # without it every task gets 403 from Cloud Run
}
APIS = {
    f"{name}.googleapis.com"
    for name in (
        "aiplatform",
        "dataflow",
        "artifactregistry",
        "run",
        "sqladmin",
        "secretmanager",
        "storage",
        "compute",
        "cloudbuild",
        "iam",
        "cloudresourcemanager",  # a new project's IAM grants need it
    )
}


@pytest.fixture(scope="module")
def module() -> policy.TerraformModule:
    return policy.load_module(TERRAFORM)


def test_the_module_is_split_by_concern():
    concerns = ("versions", "variables", "outputs", "apis", "storage", "registry", "iam", "mlflow")
    missing = {f"{c}.tf" for c in concerns} - {p.name for p in TF_FILES}
    assert not missing, f"infra/terraform: missing {sorted(missing)}"


@pytest.mark.parametrize("path", TF_FILES, ids=lambda p: p.name)
def test_every_file_parses(path):
    doc = policy.parse_hcl(path.read_text(encoding="utf-8"))
    assert doc, f"{path.name}: nothing parsed"


def test_every_variable_is_declared_and_used(module):
    assert not policy.variable_problems(module), "\n".join(policy.variable_problems(module))


def test_terraform_and_providers_are_pinned(module):
    assert not policy.provider_pin_problems(module), "\n".join(policy.provider_pin_problems(module))


def test_the_apis_are_enabled(module):
    assert set(module.locals["services"]) >= APIS, (
        f"local.services lacks {sorted(APIS - set(module.locals['services']))}"
    )
    enabled = module.resources["google_project_service.enabled"]
    assert enabled["for_each"] == "${toset(local.services)}", (
        "google_project_service.enabled: not over local.services"
    )


@pytest.mark.parametrize(
    "check",
    [
        policy.basic_role_problems,
        policy.public_member_problems,
        policy.bucket_problems,
        policy.cloud_sql_problems,
        policy.cloud_run_problems,
        lambda m: policy.project_role_problems(m, PROJECT_ROLES),
    ],
    ids=["no-basic-roles", "no-public-members", "bucket", "cloud-sql", "cloud-run", "project-roles"],
)
def test_policy(module, check):
    problems = check(module)
    assert not problems, "\n".join(problems)


# What each account does with the bucket's objects. The pipelines account writes MLflow's
# artifacts itself (the server runs with --no-serve-artifacts); the server only reads them.
BUCKET_ROLES = {
    "pipelines": "roles/storage.objectAdmin",
    "mlflow": "roles/storage.objectViewer",
    "cloudbuild": "roles/storage.objectAdmin",
}


def test_each_service_account_uses_the_bucket_through_bucket_iam(module):
    grants = policy.of_kind(module, "google_storage_bucket_iam_member")
    for account, role in BUCKET_ROLES.items():
        assert any(
            g["bucket"] == "${google_storage_bucket.pipeline.name}"
            and g["role"] == role
            and g["member"] == f"${{local.{account}_member}}"
            for g in grants.values()
        ), f"google_service_account.{account}: no {role} on google_storage_bucket.pipeline"
    for name in ("pipelines", "mlflow", "cloudbuild"):
        member = module.locals[f"{name}_member"]
        assert member == f"serviceAccount:${{google_service_account.{name}.email}}", (
            f"local.{name}_member: {member}"
        )


def test_secrets_and_the_mlflow_service_are_granted_on_the_resource(module):
    secret = module.resources["google_secret_manager_secret_iam_member.mlflow_read_db_password"]
    assert secret["secret_id"] == "${google_secret_manager_secret.mlflow_db_password.secret_id}", (
        "google_secret_manager_secret_iam_member.mlflow_read_db_password: not on the DB password secret"
    )
    address = "google_cloud_run_v2_service_iam_member.pipelines_invoke_mlflow"
    invoker = module.resources[address]
    assert (invoker["role"], invoker["member"]) == ("roles/run.invoker", "${local.pipelines_member}"), (
        f"{address}: not run.invoker for the pipelines account"
    )


def test_the_mlflow_server_carries_metadata_and_clients_write_the_bucket(module):
    """Artifacts never pass through Cloud Run (32 MiB request bodies): the server hands out
    gs:// locations in the bucket, which the pipelines account writes (BUCKET_ROLES).
    tests/cloud/test_artifacts_in_the_bucket.py runs a real server with these flags."""
    assert terraform_artifact_args("BUCKET") == [
        "--no-serve-artifacts",
        "--default-artifact-root",
        "gs://BUCKET/mlflow",
    ], "local.mlflow_server_command: artifacts are not left to the clients"
    root = policy.substitute_locals(module.outputs["mlflow_artifact_root"]["value"], module)
    assert root == "gs://${local.bucket_name}/mlflow", f"output.mlflow_artifact_root: {root!r}"


def test_the_bucket_cleans_the_dataflow_folders_that_beam_pipeline_args_uses(module):
    """The lifecycle rule and alignpipe.config.beam_pipeline_args agree on where Dataflow's
    temp and staging files go."""
    root = policy.substitute_locals(module.outputs["pipeline_root"]["value"], module)
    bucket = "BUCKET"
    root = root.replace("${local.bucket_name}", bucket)
    assert root.startswith(f"gs://{bucket}/"), f"output.pipeline_root: {root!r} is not a folder of the bucket"
    cfg = load_config("local", "tiny")
    runner = dataclasses.replace(
        cfg.runner, beam_args=("--runner=DataflowRunner",), gcp_project="p", pipeline_root=root
    )
    args = dict(
        a.lstrip("-").split("=", 1) for a in beam_pipeline_args(dataclasses.replace(cfg, runner=runner))
    )
    folders = {
        args[k].removeprefix(f"gs://{bucket}/").rstrip("/") + "/"
        for k in ("temp_location", "staging_location")
    }
    cleaned = policy.dataflow_lifecycle_prefixes(module, "google_storage_bucket.pipeline")
    assert folders <= cleaned, (
        f"google_storage_bucket.pipeline: lifecycle cleans {cleaned}, Dataflow writes {folders}"
    )


def test_outputs_give_every_config_key(module):
    missing = {k: o for k, o in CONFIG_OUTPUTS.items() if o not in module.outputs}
    assert not missing, f"outputs missing for config keys: {missing}"
    settings = module.outputs["alignpipe_settings"]["value"]
    assert set(settings) == set(CONFIG_OUTPUTS), f"output.alignpipe_settings keys: {sorted(settings)}"
    known = load_config("local", "tiny").flat()
    assert not set(settings) - set(known), (
        f"output.alignpipe_settings: unknown config keys {set(settings) - set(known)}"
    )
    for key, output in CONFIG_OUTPUTS.items():
        value = policy.substitute_locals(module.outputs[output]["value"], module)
        assert policy.substitute_locals(settings[key], module) == value, (
            f"output.alignpipe_settings[{key}] != output.{output}"
        )


def test_images_and_repository_match_cloudbuild(module):
    build = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text(encoding="utf-8"))
    subs = build["substitutions"]
    assert module.variables["name_prefix"]["default"] == subs["_REPO"], (
        "var.name_prefix: not cloudbuild.yaml's _REPO"
    )
    assert module.variables["image_tag"]["default"] == subs["_TAG"], (
        "var.image_tag: not cloudbuild.yaml's _TAG"
    )
    for output, image in (("data_image", "alignpipe-data"), ("trainer_image", "alignpipe-trainer")):
        assert any(i.endswith(f"/${{_REPO}}/{image}:${{_TAG}}") for i in build["images"]), (
            f"cloudbuild.yaml: no {image}"
        )
        value = module.outputs[output]["value"]
        assert value == f"${{local.docker_repository_url}}/{image}:${{var.image_tag}}", (
            f"output.{output}: {value}"
        )
    # The accelerator images: the moving tag is pushed once the build passed (push-accelerator-moving-tag).
    (moving,) = [s for s in build["steps"] if s["id"] == "push-accelerator-moving-tag"]
    assert "MOVING_TAG=${_TAG}" in moving["env"] and "alignpipe-trainer" in " ".join(moving["env"])
    for kind in ("tpu", "gpu"):
        value = module.outputs[f"trainer_{kind}_image"]["value"]
        assert value == f"${{local.docker_repository_url}}/alignpipe-trainer-{kind}:${{var.image_tag}}", value


def test_the_settings_output_is_a_vertex_config_that_compiles(module):
    """`compile --env vertex $SETTINGS` (README): the settings, with what apply would fill in,
    load for every experiment and pass compile's image check."""
    from alignpipe.config import EXPERIMENT_PRESETS
    from alignpipe.config.validation import check_vertex_images

    applied = {  # what `terraform apply` resolves, in the form Google gives it
        "var.project_id": "my-project",
        "var.region": module.variables["region"]["default"],
        "var.image_tag": module.variables["image_tag"]["default"],
        "local.bucket_name": "my-project-alignpipe",
        "google_artifact_registry_repository.images.repository_id": "alignpipe",
        "google_service_account.pipelines.email": "alignpipe-pipelines@my-project.iam.gserviceaccount.com",
        "google_cloud_run_v2_service.mlflow.uri": "https://alignpipe-mlflow-abc123-uc.a.run.app",
    }

    def resolved(text: str) -> str:
        text = policy.substitute_locals(text, module)
        for _ in range(3):  # locals inside locals
            text = policy.substitute_locals(text, module)
        for reference, value in applied.items():
            text = text.replace(f"${{{reference}}}", value)
        assert "${" not in text, f"output.alignpipe_settings: unresolved {text}"
        return text

    settings = {k: resolved(v) for k, v in module.outputs["alignpipe_settings"]["value"].items()}
    for experiment in EXPERIMENT_PRESETS:
        cfg = load_config("vertex", experiment, [f"{k}={v}" for k, v in settings.items()])
        check_vertex_images(cfg)
        assert cfg.tracking.auth == "google_id_token"


def test_terraform_fmt():
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("no terraform binary on PATH; the HCL checks above ran without it")
    env = {**os.environ, "CHECKPOINT_DISABLE": "1"}  # no version check over the network
    out = subprocess.run(
        [terraform, "fmt", "-check", "-diff", "-recursive", str(TERRAFORM)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, f"terraform fmt would change:\n{out.stdout}"


# --- the checks catch what they are for -----------------------------------------------------

BAD_SNIPPETS = [
    (
        policy.basic_role_problems,
        """
        locals { roles = ["roles/editor"] }
        resource "google_project_iam_member" "ci" {
          for_each = toset(local.roles)
          role     = each.value
          member   = "serviceAccount:ci@p.iam.gserviceaccount.com"
        }""",
        "google_project_iam_member.ci: grants the basic role roles/editor",
    ),
    (
        lambda m: policy.project_role_problems(m, PROJECT_ROLES),
        """
        resource "google_project_iam_member" "data" {
          project = "p"
          role    = "roles/storage.admin"
          member  = "serviceAccount:data@p.iam.gserviceaccount.com"
        }""",
        "google_project_iam_member.data: roles/storage.admin at project level",
    ),
    (
        lambda m: policy.project_role_problems(m, PROJECT_ROLES),
        """
        resource "google_project_iam_member" "secrets" {
          role   = "roles/secretmanager.secretAccessor"
          member = "serviceAccount:x@p.iam.gserviceaccount.com"
        }""",
        "google_project_iam_member.secrets: roles/secretmanager.secretAccessor is not in the project-level",
    ),
    (
        policy.cloud_run_problems,
        """
        resource "google_cloud_run_v2_service_iam_member" "open" {
          name   = google_cloud_run_v2_service.mlflow.name
          role   = "roles/run.invoker"
          member = "allUsers"
        }""",
        "google_cloud_run_v2_service_iam_member.open: makes the service publicly invokable",
    ),
    (
        policy.public_member_problems,
        """
        variable "viewers" { type = list(string) }
        resource "google_cloud_run_v2_service_iam_member" "viewers" {
          for_each = toset(var.viewers)
          role     = "roles/run.invoker"
          member   = each.value
        }""",
        "google_cloud_run_v2_service_iam_member.viewers: members come from var.viewers",
    ),
    (
        policy.bucket_problems,
        """
        resource "google_storage_bucket" "data" {
          name                        = "b"
          uniform_bucket_level_access = true
          versioning { enabled = true }
        }""",
        'google_storage_bucket.data: public_access_prevention is not "enforced"',
    ),
    (
        policy.cloud_sql_problems,
        """
        resource "google_sql_database_instance" "db" {
          deletion_protection = true
          settings {
            backup_configuration { enabled = true }
            ip_configuration {
              ipv4_enabled = true
              ssl_mode     = "ENCRYPTED_ONLY"
              authorized_networks { value = "0.0.0.0/0" }
            }
          }
        }""",
        "google_sql_database_instance.db: authorized network '0.0.0.0/0'",
    ),
    (
        policy.variable_problems,
        """
        variable "unused" { type = string }
        resource "google_storage_bucket" "b" { name = var.typo }""",
        "var.typo: used but not declared",
    ),
    (
        policy.provider_pin_problems,
        """
        terraform {
          required_version = ">= 1.5"
          required_providers {
            google = { source = "hashicorp/google", version = ">= 5.0" }
          }
        }""",
        "terraform.required_providers.google: version '>= 5.0' is not ~> 6",
    ),
]


@pytest.mark.parametrize("check, snippet, expected", BAD_SNIPPETS, ids=[e for _, _, e in BAD_SNIPPETS])
def test_a_check_finds_the_mistake_it_is_for(check, snippet, expected):
    problems = check(policy.parse_module({"bad.tf": snippet}))
    assert any(p.startswith(expected) for p in problems), f"expected {expected!r}, got {problems}"
