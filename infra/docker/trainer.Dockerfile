# Image of the trainer steps (train, evaluate) and of Vertex AI custom training jobs. No
# ENTRYPOINT: kfp tasks bring their own command, and custom jobs run `python -m trainer.task
# --config-json ... --data-dir ... --model-dir ...` (components/custom_job.py).
#
#   docker build -f infra/docker/trainer.Dockerfile -t alignpipe-trainer .
#   docker build -f infra/docker/trainer.Dockerfile --build-arg ACCELERATOR=tpu \
#     -t alignpipe-trainer-tpu .
#
# BASE_IMAGE replaces python:3.11-slim where Docker Hub is out of reach (infra/docker/local-base.sh).
ARG BASE_IMAGE=python:3.11.17-slim-bookworm
FROM ${BASE_IMAGE}

# ACCELERATOR=cpu: the project as pyproject.toml pins it. ACCELERATOR=tpu: plus the TPU build of
# TensorFlow (`tensorflow-tpu`, with libtpu) at TENSORFLOW_VERSION, which must equal the
# tensorflow pin, for TPUStrategy on Cloud TPU v2/v3 (`cloud-tpu` machines). TPU v5e / v6e run
# no TensorFlow: they need Keras 3 on JAX (infra/README.md).
ARG ACCELERATOR=cpu
ARG TENSORFLOW_VERSION=2.21.0
ARG LIBTPU_INDEX=https://storage.googleapis.com/libtpu-tf-releases/index.html

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

# tensorflow-tpu ships the same `tensorflow` package as tensorflow, built with TPU support, and
# installs over it; every other installed version is held as a constraint so that nothing else
# moves, and the two distributions must end at one version.
RUN case "$ACCELERATOR" in \
      cpu) ;; \
      tpu) pip list --format=freeze > /tmp/installed.txt \
        && pip install --no-cache-dir --constraint /tmp/installed.txt \
             --find-links "$LIBTPU_INDEX" "tensorflow-tpu==${TENSORFLOW_VERSION}" \
        && rm /tmp/installed.txt \
        && python -c "import importlib.metadata as m; \
v = [m.version(d) for d in ('tensorflow', 'tensorflow-tpu')]; assert v[0] == v[1], v" ;; \
      *) echo "ACCELERATOR=$ACCELERATOR: expected cpu or tpu" >&2; exit 1 ;; \
    esac

RUN groupadd --gid 10001 alignpipe \
    && useradd --uid 10001 --gid alignpipe --create-home --home-dir /home/alignpipe \
        --shell /usr/sbin/nologin alignpipe
USER 10001:10001
ENV HOME=/home/alignpipe
WORKDIR /home/alignpipe

# Smoke check, as that user and outside the source tree: the installed package imports.
RUN python -c "import alignpipe.config, trainer.task"
