# Image of the trainer steps (train, evaluate) and of Vertex AI custom training
# jobs: `python -m trainer.task --config-json ... --data-dir ... --model-dir ...`.
# CPU/GPU workers; TPU VMs need the TPU build of TensorFlow on top (infra/README.md).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1
WORKDIR /opt/alignpipe
COPY pyproject.toml README.md ./
COPY alignpipe ./alignpipe
COPY components ./components
COPY pipelines ./pipelines
COPY trainer ./trainer
RUN pip install --no-cache-dir . && python -c "import alignpipe.config, trainer.task"
ENTRYPOINT ["python", "-m", "trainer.task"]
