# Image of the data steps (scrape, filter, register, tracking) and of the Dataflow workers.
# Built FROM the Beam Python SDK image so that it keeps the SDK harness entrypoint
# (/opt/apache/beam/boot) and can serve as Dataflow's --sdk_container_image; kfp / Vertex AI
# give pipeline tasks their own command. BEAM_VERSION must equal pyproject.toml's apache-beam
# pin (tests/infra/test_dockerfiles.py checks it): the workers run the SDK that submitted.
#
#   docker build -f infra/docker/data.Dockerfile -t alignpipe-data .
#
# BASE_IMAGE replaces the Beam SDK image where Docker Hub is out of reach (infra/docker/local-base.sh
# builds one from Debian's packages): such an image runs kfp tasks, not Dataflow workers.
ARG BEAM_VERSION=2.77.0
ARG BASE_IMAGE=apache/beam_python3.11_sdk:${BEAM_VERSION}
FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    MLFLOW_DISABLE_TELEMETRY=true

# The project with pyproject.toml's exact pins, into the image's Python (the one boot runs).
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

# Root, as in the Beam SDK image it is built from. Dataflow starts each worker's container through
# boot and gives it the worker's semi-persistent folder (/var/opt/google on Dataflow: staged
# files, boot's per-worker virtualenv), which the process must write to. Dataflow's guide to custom
# containers asks for the Beam SDK, boot as the last step of start-up and the workers'
# architecture, and names no user; a report of a non-root image on Dataflow
# (pangeo-data/pangeo-docker-images#360) found those folders mounted as root and unwritable to
# its user, and went back to root. The trainer and MLflow images stay non-root.
USER root
WORKDIR /home

# Smoke check, outside the source tree (so the installed package is what imports): the
# project's entry points, and the virtualenv boot makes can see them.
RUN python -c "import alignpipe.config, components.ops, pipelines.cli" \
    && python -m venv --system-site-packages /tmp/beam-venv-smoke \
    && /tmp/beam-venv-smoke/bin/python -c "import apache_beam, alignpipe.config" \
    && rm -rf /tmp/beam-venv-smoke

ENTRYPOINT ["/opt/apache/beam/boot"]
