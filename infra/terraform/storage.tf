# One bucket for everything the pipeline writes:
#   gs://BUCKET/pipelines/                   Vertex AI pipeline root (runner.pipeline_root)
#   gs://BUCKET/pipelines/dataflow/{temp,staging}/  Dataflow files, placed there by
#                                            alignpipe.config.beam_pipeline_args
#   gs://BUCKET/mlflow/                      MLflow artifacts (the server's --default-artifact-root;
#                                            clients read and write them directly)
#   gs://BUCKET/templates/                   compiled pipelines published by cloudbuild.yaml
locals {
  bucket_name     = var.bucket_name != "" ? var.bucket_name : "${var.project_id}-${var.name_prefix}"
  pipeline_prefix = "pipelines"
  pipeline_root   = "gs://${local.bucket_name}/${local.pipeline_prefix}"
}

resource "google_storage_bucket" "pipeline" {
  project  = var.project_id
  name     = local.bucket_name
  location = var.region # beside the Vertex AI and Dataflow jobs that read and write it

  uniform_bucket_level_access = true # IAM only, no per-object ACLs
  public_access_prevention    = "enforced"
  force_destroy               = false # holds datasets, models and run history

  versioning {
    enabled = true
  }

  # Dataflow's temp and staging files are worthless once their job has ended.
  lifecycle_rule {
    condition {
      age = var.dataflow_temp_retention_days
      matches_prefix = [
        "${local.pipeline_prefix}/dataflow/temp/",
        "${local.pipeline_prefix}/dataflow/staging/",
      ]
    }
    action {
      type = "Delete"
    }
  }

  # Versioning keeps overwritten and deleted objects; drop those old versions after a while.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_version_retention_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.enabled]
}
