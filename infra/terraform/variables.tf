variable "project_id" {
  description = "Google Cloud project that holds everything below (runner.gcp_project)."
  type        = string
}

variable "region" {
  description = "Region of the bucket, the registries, Cloud SQL, Cloud Run, Vertex AI and Dataflow jobs (runner.gcp_region)."
  type        = string
  default     = "us-central1"
}

variable "name_prefix" {
  description = "Prefix of every resource name; also the Docker repository id (cloudbuild.yaml's _REPO)."
  type        = string
  default     = "alignpipe"

  validation {
    # Service account ids are 6-30 characters: the prefix plus "-cloudbuild" must fit.
    condition     = can(regex("^[a-z][a-z0-9-]{2,17}$", var.name_prefix))
    error_message = "name_prefix must be 3-18 characters: lower-case letters, digits and hyphens, starting with a letter."
  }
}

variable "bucket_name" {
  description = "Name of the pipeline bucket; empty means \"<project_id>-<name_prefix>\"."
  type        = string
  default     = ""
}

variable "image_tag" {
  description = "Tag of the data and trainer images that the data_image / trainer_image outputs name (cloudbuild.yaml's _TAG)."
  type        = string
  default     = "latest"
}

variable "mlflow_image" {
  description = <<-EOT
    Image of the MLflow tracking server: any image with `mlflow` (3.17.2, as the project pins),
    `psycopg2-binary` and `google-cloud-storage` installed and /bin/sh. It is started as
    `mlflow server --backend-store-uri postgresql://... --no-serve-artifacts
    --default-artifact-root gs://BUCKET/mlflow`
    (see mlflow.tf).
  EOT
  type        = string
}

variable "mlflow_db_tier" {
  description = "Cloud SQL machine type of the MLflow database."
  type        = string
  default     = "db-custom-1-3840"
}

variable "mlflow_invokers" {
  description = "Extra principals allowed to call the MLflow server (e.g. \"user:alice@example.com\", \"group:ml@example.com\"), for the UI through `gcloud run services proxy`."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for m in var.mlflow_invokers : !contains(["allUsers", "allAuthenticatedUsers"], m)])
    error_message = "mlflow_invokers must name principals; allUsers and allAuthenticatedUsers would make the MLflow server public."
  }
}

variable "dataflow_temp_retention_days" {
  description = "Days after which Dataflow's temp and staging files are deleted."
  type        = number
  default     = 14
}

variable "noncurrent_version_retention_days" {
  description = "Days an overwritten or deleted object's old version is kept (the bucket is versioned)."
  type        = number
  default     = 30
}
