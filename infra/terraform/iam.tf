# Identities and every role they hold, in one place to review. Least privilege: a role is
# granted on the bucket, repository, secret, service or service account it is about; only
# roles with no narrower resource to bind to are project-level. No basic roles.

# --- service accounts --------------------------------------------------------------------

resource "google_service_account" "pipelines" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-pipelines"
  display_name = "alignpipe pipelines: Vertex AI pipeline jobs, their Dataflow and custom jobs"

  depends_on = [google_project_service.enabled]
}

resource "google_service_account" "mlflow" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-mlflow"
  display_name = "alignpipe MLflow tracking server (Cloud Run)"

  depends_on = [google_project_service.enabled]
}

resource "google_service_account" "cloudbuild" {
  project      = var.project_id
  account_id   = "${var.name_prefix}-cloudbuild"
  display_name = "alignpipe Cloud Build: images and pipeline templates"

  depends_on = [google_project_service.enabled]
}

locals {
  pipelines_member  = "serviceAccount:${google_service_account.pipelines.email}"
  mlflow_member     = "serviceAccount:${google_service_account.mlflow.email}"
  cloudbuild_member = "serviceAccount:${google_service_account.cloudbuild.email}"

  pipelines_project_roles = [
    "roles/aiplatform.user",    # pipeline jobs and the custom jobs they start
    "roles/dataflow.developer", # the scrape and filter tasks launch Dataflow jobs ...
    "roles/dataflow.worker",    # ... whose workers run as this account too
    "roles/logging.logWriter",
  ]
  mlflow_project_roles = [
    "roles/cloudsql.client", # Cloud SQL has no per-instance IAM
  ]
  cloudbuild_project_roles = [
    "roles/aiplatform.user", # upload templates, create schedules
    "roles/logging.logWriter",
  ]
}

# --- project-level roles -----------------------------------------------------------------

resource "google_project_iam_member" "pipelines" {
  for_each = toset(local.pipelines_project_roles)

  project = var.project_id
  role    = each.value
  member  = local.pipelines_member
}

resource "google_project_iam_member" "mlflow" {
  for_each = toset(local.mlflow_project_roles)

  project = var.project_id
  role    = each.value
  member  = local.mlflow_member
}

resource "google_project_iam_member" "cloudbuild" {
  for_each = toset(local.cloudbuild_project_roles)

  project = var.project_id
  role    = each.value
  member  = local.cloudbuild_member
}

# --- the bucket ----------------------------------------------------------------------------

# The pipeline's tasks read and write everything, MLflow's artifacts included: the MLflow
# server does not carry them (--no-serve-artifacts, mlflow.tf), so the tasks that log, register
# and download models reach gs://BUCKET/mlflow/ with this grant.
resource "google_storage_bucket_iam_member" "pipelines_objects" {
  bucket = google_storage_bucket.pipeline.name
  role   = "roles/storage.objectAdmin"
  member = local.pipelines_member
}

# The MLflow server only reads artifacts: its UI shows a run's files from the bucket. Clients
# write them with their own accounts.
resource "google_storage_bucket_iam_member" "mlflow_objects" {
  bucket = google_storage_bucket.pipeline.name
  role   = "roles/storage.objectViewer"
  member = local.mlflow_member
}

# Build source, build logs (`--gcs-source-staging-dir`, `--gcs-log-dir`) and published templates.
resource "google_storage_bucket_iam_member" "cloudbuild_objects" {
  bucket = google_storage_bucket.pipeline.name
  role   = "roles/storage.objectAdmin"
  member = local.cloudbuild_member
}

# --- Artifact Registry -------------------------------------------------------------------

# Dataflow workers pull the data image as this account (--sdk_container_image).
resource "google_artifact_registry_repository_iam_member" "pipelines_read_images" {
  project    = var.project_id
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.reader"
  member     = local.pipelines_member
}

resource "google_artifact_registry_repository_iam_member" "pipelines_read_templates" {
  project    = var.project_id
  location   = google_artifact_registry_repository.templates.location
  repository = google_artifact_registry_repository.templates.name
  role       = "roles/artifactregistry.reader"
  member     = local.pipelines_member
}

resource "google_artifact_registry_repository_iam_member" "cloudbuild_write_images" {
  project    = var.project_id
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.writer"
  member     = local.cloudbuild_member
}

resource "google_artifact_registry_repository_iam_member" "cloudbuild_write_templates" {
  project    = var.project_id
  location   = google_artifact_registry_repository.templates.location
  repository = google_artifact_registry_repository.templates.name
  role       = "roles/artifactregistry.writer"
  member     = local.cloudbuild_member
}

# --- acting as the pipelines account -------------------------------------------------------

# A pipeline job running as this account starts Dataflow and custom jobs as the same account.
resource "google_service_account_iam_member" "pipelines_act_as_itself" {
  service_account_id = google_service_account.pipelines.name
  role               = "roles/iam.serviceAccountUser"
  member             = local.pipelines_member
}

# Schedules created by Cloud Build run as the pipelines account.
resource "google_service_account_iam_member" "cloudbuild_act_as_pipelines" {
  service_account_id = google_service_account.pipelines.name
  role               = "roles/iam.serviceAccountUser"
  member             = local.cloudbuild_member
}

# --- MLflow --------------------------------------------------------------------------------

resource "google_secret_manager_secret_iam_member" "mlflow_read_db_password" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.mlflow_db_password.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = local.mlflow_member
}

# The server is not public: callers need run.invoker and send an ID token (mlflow.tf).
resource "google_cloud_run_v2_service_iam_member" "pipelines_invoke_mlflow" {
  project  = var.project_id
  location = google_cloud_run_v2_service.mlflow.location
  name     = google_cloud_run_v2_service.mlflow.name
  role     = "roles/run.invoker"
  member   = local.pipelines_member
}

resource "google_cloud_run_v2_service_iam_member" "people_invoke_mlflow" {
  for_each = toset(var.mlflow_invokers)

  project  = var.project_id
  location = google_cloud_run_v2_service.mlflow.location
  name     = google_cloud_run_v2_service.mlflow.name
  role     = "roles/run.invoker"
  member   = each.value
}
