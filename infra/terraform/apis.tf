locals {
  services = [
    "aiplatform.googleapis.com",       # Vertex AI pipelines and custom jobs
    "dataflow.googleapis.com",         # Beam on Dataflow (scrape, filter)
    "artifactregistry.googleapis.com", # images and pipeline templates
    "run.googleapis.com",              # the MLflow server
    "sqladmin.googleapis.com",         # its database, and the Cloud SQL connector Cloud Run uses
    "secretmanager.googleapis.com",    # the database password
    "compute.googleapis.com",          # Dataflow workers
    "storage.googleapis.com",
    "cloudbuild.googleapis.com",
    "iam.googleapis.com",
    "cloudresourcemanager.googleapis.com", # project IAM grants (google_project_iam_member) go through it
  ]
}

resource "google_project_service" "enabled" {
  for_each = toset(local.services)

  project = var.project_id
  service = each.value
  # Leave the APIs on when this stack is destroyed: other things in the project may use them.
  disable_on_destroy = false
}
