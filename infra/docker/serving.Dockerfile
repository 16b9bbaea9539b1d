# Image of `alignpipe serve`: the search server and Vertex AI's serving container for the models
# the pipeline registers (components/vertex_registry.py names it in each upload, with the port
# and routes below). Under Vertex AI it reads everything from the environment: the model from
# AIP_STORAGE_URI (the SavedModel's gs:// copy), the port from AIP_HTTP_PORT and the routes
# from AIP_HEALTH_ROUTE / AIP_PREDICT_ROUTE, and binds every interface. Elsewhere:
#
#   docker build -f infra/docker/serving.Dockerfile -t alignpipe-serving .
#   docker run -p 8080:8080 -v $PWD/runs:/runs:ro alignpipe-serving \
#       --host 0.0.0.0 --model /runs/model --index /runs/index
#
# BASE_IMAGE replaces python:3.11-slim where Docker Hub is out of reach (infra/docker/local-base.sh).
ARG BASE_IMAGE=python:3.11.17-slim-bookworm
FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    MLFLOW_DISABLE_TELEMETRY=true

WORKDIR /opt/alignpipe
# The pinned dependencies first, from pyproject.toml alone: a code change rebuilds the layers
# after it, never the dependencies' gigabytes.
COPY pyproject.toml ./
RUN python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
        > /tmp/requirements.txt \
    && pip install --no-cache-dir --requirement /tmp/requirements.txt \
    && rm /tmp/requirements.txt
COPY README.md ./
COPY alignpipe ./alignpipe
COPY components ./components
COPY pipelines ./pipelines
COPY trainer ./trainer
RUN pip install --no-cache-dir --no-deps .

RUN groupadd --gid 10001 alignpipe \
    && useradd --uid 10001 --gid alignpipe --create-home --home-dir /home/alignpipe \
        --shell /usr/sbin/nologin alignpipe
USER 10001:10001
ENV HOME=/home/alignpipe
WORKDIR /home/alignpipe

# Smoke check, as that user and outside the source tree: the server's modules and the search
# page (package data) are installed.
RUN python -c "import pipelines.serving; from alignpipe.serving.http_app import page_file; page_file('search.js')"

# Vertex AI's default AIP_HTTP_PORT, and what the Model Registry upload names.
EXPOSE 8080
ENTRYPOINT ["alignpipe", "serve"]
