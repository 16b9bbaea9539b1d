# Image of the data steps (scrape, filter, register, tracking) and Dataflow workers.
# Built FROM the Beam Python SDK image so that it keeps the SDK harness
# entrypoint (/opt/apache/beam/boot) and can serve as Dataflow's
# --sdk_container_image; kfp / Vertex AI override the command for pipeline tasks.
ARG BEAM_VERSION=2.77.0
FROM apache/beam_python3.11_sdk:${BEAM_VERSION}

WORKDIR /opt/alignpipe
COPY pyproject.toml README.md ./
COPY alignpipe ./alignpipe
COPY components ./components
COPY pipelines ./pipelines
COPY trainer ./trainer
RUN pip install --no-cache-dir . && python -c "import alignpipe.config, components.ops, pipelines.cli"
