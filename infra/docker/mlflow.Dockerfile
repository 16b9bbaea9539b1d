# The MLflow tracking server that infra/terraform/mlflow.tf runs on Cloud Run (var.mlflow_image).
# Cloud Run gives the command line (`mlflow server --backend-store-uri postgresql://...
# --no-serve-artifacts --default-artifact-root gs://... --port 8080`, the database password from
# Secret Manager at start), so the image holds no configuration and no secret. MLFLOW_VERSION must equal
# pyproject.toml's mlflow pin (tests/infra/test_dockerfiles.py checks it).
#
#   docker build -f infra/docker/mlflow.Dockerfile -t alignpipe-mlflow:3.17.2 .
ARG PYTHON_IMAGE=python:3.11.17-slim-bookworm
FROM ${PYTHON_IMAGE}

ARG MLFLOW_VERSION=3.17.2

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    MLFLOW_DISABLE_TELEMETRY=true

# psycopg2 for Cloud SQL (PostgreSQL), google-cloud-storage for reading the gs:// artifact store
# (the UI's artifact view; clients write it themselves).
# SQLAlchemy is held at 2.0: from 2.1 on a bare postgresql:// URI (mlflow.tf's) means psycopg 3,
# and the server would stop at start with "No module named 'psycopg'".
RUN pip install --no-cache-dir \
        "mlflow==${MLFLOW_VERSION}" \
        psycopg2-binary==2.9.13 \
        google-cloud-storage==3.17.1 \
        sqlalchemy==2.0.58 \
    && pip check

RUN groupadd --gid 10001 mlflow \
    && useradd --uid 10001 --gid mlflow --create-home --home-dir /home/mlflow \
        --shell /usr/sbin/nologin mlflow
USER 10001:10001
ENV HOME=/home/mlflow
WORKDIR /home/mlflow

# Smoke check: the CLI runs, and the URI form mlflow.tf uses finds its driver (create_engine
# loads the DBAPI without connecting).
RUN mlflow --version \
    && python -c "import google.cloud.storage, sqlalchemy; \
sqlalchemy.create_engine('postgresql://mlflow@/mlflow?host=/cloudsql/p:r:i')"

EXPOSE 8080
# For `docker run -p 8080:8080 IMAGE` (a SQLite store in $HOME); Cloud Run replaces it.
CMD ["mlflow", "server", "--host", "0.0.0.0", "--port", "8080"]
