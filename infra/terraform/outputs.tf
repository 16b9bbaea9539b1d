# What the alignpipe CLI needs. `alignpipe_settings` gathers them under their config keys:
#   terraform output -json alignpipe_settings | jq -r 'to_entries[] | "--set \(.key)=\(.value)"'

locals {
  docker_repository_url = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
}

output "project_id" {
  description = "runner.gcp_project"
  value       = var.project_id
}

output "region" {
  description = "runner.gcp_region"
  value       = var.region
}

output "bucket" {
  description = "The pipeline bucket (cloudbuild.yaml's _BUCKET)."
  value       = google_storage_bucket.pipeline.name
}

output "pipeline_root" {
  description = "runner.pipeline_root; Dataflow temp and staging go below it."
  value       = local.pipeline_root
}

output "pipelines_service_account" {
  description = "runner.service_account: Vertex AI pipeline jobs, Dataflow and custom jobs run as it."
  value       = google_service_account.pipelines.email
}

output "mlflow_service_account" {
  description = "Identity of the MLflow server."
  value       = google_service_account.mlflow.email
}

output "cloudbuild_service_account" {
  description = "For `gcloud builds submit --service-account=projects/PROJECT/serviceAccounts/EMAIL`."
  value       = google_service_account.cloudbuild.email
}

output "docker_repository_url" {
  description = "Docker repository of the images (cloudbuild.yaml's _REPO is its last part)."
  value       = local.docker_repository_url
}

output "kfp_repository_url" {
  description = "KFP repository of the compiled pipelines (kfp.registry.RegistryClient host)."
  value       = "https://${var.region}-kfp.pkg.dev/${var.project_id}/${google_artifact_registry_repository.templates.repository_id}"
}

output "data_image" {
  description = "runner.data_image, as cloudbuild.yaml tags it."
  value       = "${local.docker_repository_url}/alignpipe-data:${var.image_tag}"
}

output "trainer_image" {
  description = "runner.trainer_image, as cloudbuild.yaml tags it."
  value       = "${local.docker_repository_url}/alignpipe-trainer:${var.image_tag}"
}

output "trainer_tpu_image" {
  description = "runner.trainer_tpu_image, as cloudbuild.yaml tags it (built when the experiment's slice is TPUs)."
  value       = "${local.docker_repository_url}/alignpipe-trainer-tpu:${var.image_tag}"
}

output "serving_image" {
  description = "register.serving_image: the Vertex AI prediction container (alignpipe serve), as cloudbuild.yaml tags it."
  value       = "${local.docker_repository_url}/alignpipe-serving:${var.image_tag}"
}

output "trainer_gpu_image" {
  description = "runner.trainer_gpu_image, as cloudbuild.yaml tags it (built when the experiment's slice is GPUs)."
  value       = "${local.docker_repository_url}/alignpipe-trainer-gpu:${var.image_tag}"
}

output "mlflow_tracking_uri" {
  description = "tracking.tracking_uri: the MLflow server (callers need roles/run.invoker and an ID token)."
  value       = google_cloud_run_v2_service.mlflow.uri
}

output "mlflow_auth" {
  description = "tracking.auth: the server is a Cloud Run service behind IAM, which takes only Google ID tokens."
  value       = "google_id_token"
}

output "mlflow_artifact_root" {
  description = "Where MLflow artifacts go (the server's --default-artifact-root); clients write and read it themselves."
  value       = local.mlflow_artifact_root
}

output "alignpipe_settings" {
  description = "The alignpipe config keys these resources decide, for `--set KEY=VALUE`."
  value = {
    "runner.gcp_project"       = var.project_id
    "runner.gcp_region"        = var.region
    "runner.pipeline_root"     = local.pipeline_root
    "runner.service_account"   = google_service_account.pipelines.email
    "runner.data_image"        = "${local.docker_repository_url}/alignpipe-data:${var.image_tag}"
    "runner.trainer_image"     = "${local.docker_repository_url}/alignpipe-trainer:${var.image_tag}"
    "runner.trainer_tpu_image" = "${local.docker_repository_url}/alignpipe-trainer-tpu:${var.image_tag}"
    "runner.trainer_gpu_image" = "${local.docker_repository_url}/alignpipe-trainer-gpu:${var.image_tag}"
    "register.serving_image"   = "${local.docker_repository_url}/alignpipe-serving:${var.image_tag}"
    "tracking.tracking_uri"    = google_cloud_run_v2_service.mlflow.uri
    "tracking.auth"            = "google_id_token"
  }
}
