# Images of the pipeline steps (infra/docker/*.Dockerfile, pushed by cloudbuild.yaml as
# REGION-docker.pkg.dev/PROJECT/<name_prefix>/alignpipe-{data,trainer}:TAG).
resource "google_artifact_registry_repository" "images" {
  project       = var.project_id
  location      = var.region
  repository_id = var.name_prefix
  format        = "DOCKER"
  description   = "alignpipe data and trainer images (and the MLflow server image, if built here)"

  depends_on = [google_project_service.enabled]
}

# Compiled pipeline templates, for kfp.registry.RegistryClient and PipelineJob(template_path=
# "https://REGION-kfp.pkg.dev/PROJECT/REPO/NAME/TAG").
resource "google_artifact_registry_repository" "templates" {
  project       = var.project_id
  location      = var.region
  repository_id = "${var.name_prefix}-templates"
  format        = "KFP"
  description   = "alignpipe compiled pipeline templates"

  depends_on = [google_project_service.enabled]
}
