# Image of the trainer steps (train, evaluate) and of Vertex AI custom training jobs. No
# ENTRYPOINT: kfp tasks bring their own command, and custom jobs run `python -m trainer.task
# --config-json ... --data-dir ... --model-dir ...` (components/custom_job.py).
#
#   docker build -f infra/docker/trainer.Dockerfile -t alignpipe-trainer .
#   docker build -f infra/docker/trainer.Dockerfile --build-arg ACCELERATOR=tpu -t alignpipe-trainer-tpu .
#   docker build -f infra/docker/trainer.Dockerfile --build-arg ACCELERATOR=gpu -t alignpipe-trainer-gpu .
#
# BASE_IMAGE replaces python:3.11-slim where Docker Hub is out of reach (infra/docker/local-base.sh).
ARG BASE_IMAGE=python:3.11.17-slim-bookworm
FROM ${BASE_IMAGE}

# ACCELERATOR=cpu: the project as pyproject.toml pins it. ACCELERATOR=tpu or gpu: plus that
# optional-dependencies extra of pyproject.toml, resolved together with the rest: `tpu` is JAX
# with libtpu (`jax[tpu]`, every wheel from PyPI) for TPU v5e / v6e / v5p VMs, `gpu` JAX with
# NVIDIA's CUDA 12 wheels (`jax[cuda12]`, from PyPI; the VM brings only the driver).
# tests/infra/test_image_pins.py resolves each image's pins against the package index.
ARG ACCELERATOR=cpu

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    MLFLOW_DISABLE_TELEMETRY=true

WORKDIR /opt/alignpipe
# The pinned dependencies first, from pyproject.toml alone: a code change rebuilds the layers
# after it, never the dependencies' gigabytes.
COPY pyproject.toml ./
RUN case "$ACCELERATOR" in \
      cpu|tpu|gpu) ;; \
      *) echo "ACCELERATOR=$ACCELERATOR: expected cpu, tpu or gpu" >&2; exit 1 ;; \
    esac \
    && python -c "import sys, tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
extra = [] if sys.argv[1] == 'cpu' else p['optional-dependencies'][sys.argv[1]]; \
print(*p['dependencies'], *extra, sep='\n')" "$ACCELERATOR" > /tmp/requirements.txt \
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

# Smoke check, as that user and outside the source tree: the installed package imports, and on
# an accelerator image JAX (its devices appear only on the TPU or GPU VM).
RUN python -c "import alignpipe.config, trainer.task" \
    && if [ "$ACCELERATOR" != cpu ]; then python -c "import jax"; fi
