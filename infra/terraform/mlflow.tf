# The shared MLflow tracking server (tracking.tracking_uri): Cloud Run in front of Cloud SQL
# for PostgreSQL (runs, metrics, registry). It carries metadata only: model and run artifacts
# live in the bucket's mlflow/ folder, which clients read and write themselves with their own
# service account (--no-serve-artifacts). Through the server's artifact proxy every file would
# be one request, and Cloud Run refuses request bodies over 32 MiB (a model's variables are GBs).

locals {
  mlflow_artifact_root = "gs://${local.bucket_name}/mlflow"
  # Cloud Run mounts the Cloud SQL connector's Unix socket under /cloudsql.
  mlflow_db_socket = "/cloudsql/${google_sql_database_instance.mlflow.connection_name}"
  # Run through /bin/sh so that $DB_PASSWORD (from Secret Manager) lands in the URI at start;
  # the password is letters and digits only, so it needs no URL escaping.
  # --allowed-hosts: MLflow answers only localhost and private addresses by default; the
  # service's *.run.app names are known only after it exists, hence the wildcard.
  mlflow_server_command = join(" ", [
    "exec mlflow server",
    "--backend-store-uri \"postgresql://${google_sql_user.mlflow.name}:$DB_PASSWORD@/${google_sql_database.mlflow.name}?host=${local.mlflow_db_socket}\"",
    # A new experiment's artifacts go to ARTIFACT_ROOT/<experiment id>/, a gs:// URI that the
    # server hands to clients as it is (tests/cloud/test_artifacts_in_the_bucket.py).
    "--no-serve-artifacts --default-artifact-root ${local.mlflow_artifact_root}",
    "--host 0.0.0.0 --port 8080 --workers 2",
    "--allowed-hosts '${var.name_prefix}-mlflow-*.run.app'",
  ])
}

# --- database ------------------------------------------------------------------------------

resource "google_sql_database_instance" "mlflow" {
  project          = var.project_id
  name             = "${var.name_prefix}-mlflow"
  region           = var.region
  database_version = "POSTGRES_16"
  # Every run's history lives here: Terraform refuses to destroy it (and the API too, below).
  deletion_protection = true

  settings {
    edition                     = "ENTERPRISE"
    tier                        = var.mlflow_db_tier
    availability_type           = "ZONAL"
    disk_autoresize             = true
    deletion_protection_enabled = true

    backup_configuration {
      enabled                        = true
      point_in_time_recovery_enabled = true
      start_time                     = "02:00"
      backup_retention_settings {
        retained_backups = 14
      }
    }

    # No authorized networks: nothing reaches the address directly. Cloud Run connects
    # through the Cloud SQL connector (IAM-checked, TLS) over the public address; a private IP
    # would need a VPC, private services access and Direct VPC egress for Cloud Run.
    ip_configuration {
      ipv4_enabled = true
      ssl_mode     = "ENCRYPTED_ONLY"
    }
  }

  depends_on = [google_project_service.enabled]
}

resource "google_sql_database" "mlflow" {
  project  = var.project_id
  instance = google_sql_database_instance.mlflow.name
  name     = "mlflow"
}

resource "random_password" "mlflow_db" {
  length  = 32
  special = false # it goes into a URI unescaped
}

resource "google_sql_user" "mlflow" {
  project  = var.project_id
  instance = google_sql_database_instance.mlflow.name
  name     = "mlflow"
  password = random_password.mlflow_db.result
  # PostgreSQL refuses to drop a role that owns MLflow's tables; leave it with the instance.
  deletion_policy = "ABANDON"
}

resource "google_secret_manager_secret" "mlflow_db_password" {
  project   = var.project_id
  secret_id = "${var.name_prefix}-mlflow-db-password"

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}

resource "google_secret_manager_secret_version" "mlflow_db_password" {
  secret      = google_secret_manager_secret.mlflow_db_password.id
  secret_data = random_password.mlflow_db.result
}

# --- server --------------------------------------------------------------------------------

resource "google_cloud_run_v2_service" "mlflow" {
  project  = var.project_id
  name     = "${var.name_prefix}-mlflow"
  location = var.region
  # Vertex AI pipeline tasks call from outside any VPC unless their jobs are peered to one, so
  # an internal-only ingress would lock them out. Access is by IAM instead: no allUsers
  # invoker, only the accounts granted roles/run.invoker in iam.tf, with an ID token.
  ingress = "INGRESS_TRAFFIC_ALL"
  # The server holds no state (runs are in Cloud SQL, artifacts in the bucket): let
  # `terraform destroy` replace it. The provider's default since 6.0 is true.
  deletion_protection = false

  template {
    service_account = google_service_account.mlflow.email

    # One instance: the server migrates the database schema when it starts.
    scaling {
      min_instance_count = 0
      max_instance_count = 1
    }

    volumes {
      name = "cloudsql"
      cloud_sql_instance {
        instances = [google_sql_database_instance.mlflow.connection_name]
      }
    }

    containers {
      image   = var.mlflow_image
      command = ["/bin/sh", "-c"]
      args    = [local.mlflow_server_command]

      ports {
        container_port = 8080
      }

      env {
        name = "DB_PASSWORD"
        value_source {
          secret_key_ref {
            secret  = google_secret_manager_secret.mlflow_db_password.secret_id
            version = "latest"
          }
        }
      }

      resources {
        limits = {
          cpu    = "1"
          memory = "2Gi"
        }
      }

      volume_mounts {
        name       = "cloudsql"
        mount_path = "/cloudsql"
      }
    }
  }

  depends_on = [
    google_project_service.enabled,
    google_secret_manager_secret_version.mlflow_db_password,
    google_secret_manager_secret_iam_member.mlflow_read_db_password,
    google_project_iam_member.mlflow,
    google_storage_bucket_iam_member.mlflow_objects,
  ]
}
