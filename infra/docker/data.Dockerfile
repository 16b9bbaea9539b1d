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

# A non-root user. boot writes a per-worker virtualenv (with the system site-packages) under
# /opt/apache/beam-venv and staged files under --semi_persist_dir (default /tmp), and pip
# keeps its own files under $HOME: the first and the last belong to the user.
RUN groupadd --gid 10001 alignpipe \
    && useradd --uid 10001 --gid alignpipe --create-home --home-dir /home/alignpipe \
        --shell /usr/sbin/nologin alignpipe \
    && mkdir -p /opt/apache/beam-venv \
    && chown alignpipe:alignpipe /opt/apache/beam-venv
USER 10001:10001
ENV HOME=/home/alignpipe
WORKDIR /home/alignpipe

# Smoke check, as that user and outside the source tree (so the installed package is what
# imports): the project's entry points, and the virtualenv boot makes can see them.
RUN python -c "import alignpipe.config, components.ops, pipelines.cli" \
    && python -m venv --system-site-packages /opt/apache/beam-venv/smoke \
    && /opt/apache/beam-venv/smoke/bin/python -c "import apache_beam, alignpipe.config" \
    && rm -rf /opt/apache/beam-venv/smoke

ENTRYPOINT ["/opt/apache/beam/boot"]
