#!/usr/bin/env bash
# Training on a machine with an NVIDIA GPU (or a TPU VM: ACCELERATOR=tpu): installs the
# accelerator's JAX plugin (pyproject's `gpu` / `tpu` extra) into the project's virtualenv,
# then trains the tiny preset and an EfficientNet-B0-class preset for a few hundred steps on
# synthetic pairs and prints images/s, step time and peak device memory, one JSON line each.
# About 5 minutes on one GPU. Usage: bench/accelerator_check.sh [STEPS] [PAIRS]
set -euo pipefail
cd "$(dirname "$0")/.."
ACCELERATOR="${ACCELERATOR:-gpu}"
STEPS="${1:-300}"
PAIRS="${2:-4096}"
make install >/dev/null
.venv/bin/python -m pip install --quiet -e ".[${ACCELERATOR}]"
.venv/bin/python -c 'import jax; print("devices:", jax.devices())'
PYTHONPATH=. .venv/bin/python bench/accelerator_check.py --steps "$STEPS" --pairs "$PAIRS"
