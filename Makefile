# The few commands people run; CI (.ci/run) calls the same targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: help install run test test-fast test-docker docker-images run-docker lint format compile clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s "$$(printf '\t')"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

# The browser that tests/serving/test_search_page.py drives: Debian's chromium and its driver,
# installed only when missing (the test fails without them; it never downloads a browser itself).
BROWSER := /usr/bin/chromium /usr/bin/chromedriver
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
$(BROWSER):
	@command -v apt-get >/dev/null || { echo "no apt-get: install chromium and chromedriver as $(BROWSER)" >&2; exit 1; }
	$(SUDO) apt-get install -y -qq --no-install-recommends chromium chromium-driver \
		|| { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends chromium chromium-driver; }

install: $(STAMP) $(BROWSER)  ## create the virtualenv (if missing), install the project and the tests' browser

run: $(STAMP)  ## run the whole pipeline locally on the built-in demo web
	$(BIN)/alignpipe run

test: install  ## run every test, the local end-to-end pipeline included (one worker per core), but the Docker ones
	$(BIN)/python -m pytest -q -ra --durations=15 -n auto --maxprocesses 4 --dist loadgroup -m "not docker"

test-fast: $(STAMP)  ## skip the slow tests (training, Beam pipelines, kfp runs)
	$(BIN)/python -m pytest -q -m "not large and not e2e"

# The images that kfp's DockerRunner (and Vertex AI) run. Where Docker Hub is out of reach, build a
# base first (infra/docker/local-base.sh) and pass it: make docker-images BASE_IMAGE=alignpipe-base:bookworm
BASE_IMAGE ?=
DOCKER_BUILD = docker build $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE))
docker-images:  ## build the data, trainer and serving images (alignpipe-data:latest, alignpipe-trainer:latest, alignpipe-serving:latest)
	$(DOCKER_BUILD) -f infra/docker/data.Dockerfile -t alignpipe-data:latest .
	$(DOCKER_BUILD) -f infra/docker/trainer.Dockerfile -t alignpipe-trainer:latest .
	$(DOCKER_BUILD) -f infra/docker/serving.Dockerfile -t alignpipe-serving:latest .

run-docker: $(STAMP) docker-images  ## the whole pipeline on the demo web, every task in the images (needs a Docker engine)
	$(BIN)/alignpipe run --runner docker --work-dir alignpipe-work-docker

test-docker: $(STAMP) docker-images  ## the tests that run tasks in the images (needs a Docker engine)
	$(BIN)/python -m pytest -q -ra --durations=5 -m docker

lint: $(STAMP)  ## ruff lint + format check
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: $(STAMP)  ## ruff autofix + format
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

compile: $(STAMP)  ## compile the pipeline YAML for Vertex AI / Kubeflow
	$(BIN)/alignpipe compile --out align_pipeline.yaml

clean:  ## remove local run outputs (keeps the virtualenv)
	rm -rf alignpipe-work alignpipe-work-docker align_pipeline.yaml
