"""Runs the ALIGN DAG on this machine with kfp's local runner.

With no `scrape.seed_urls` configured, the built-in demo web (see
`alignpipe.demo.demo_web`) is generated into `<work_dir>/demo`, served on
127.0.0.1, and its evaluation sets and unsafe-image blocklist fill the config
keys left empty. Every task runs as a subprocess in this Python environment
(`runner="subprocess"`), exactly the component code that Vertex AI runs in the
project's images; `runner="docker"` runs each task in those images instead,
through kfp's DockerRunner.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import warnings
from collections.abc import Iterator

from alignpipe import fs
from alignpipe.config import Config
from alignpipe.errors import AlignPipeError, InputError

log = logging.getLogger("alignpipe")

# The demo web's evaluation sets, by name: their metrics are `demo/...` and `demo_shapes/...`.
DEMO_RETRIEVAL = "demo"
DEMO_CLASSIFICATION = "demo_shapes"


def resolve_paths(cfg: Config) -> Config:
    """Makes the work folder absolute and fixes the tracking URI (kfp tasks run elsewhere); the
    corpus index is kept in `<work_dir>/index` unless `index.path` says otherwise."""
    from components.mlflow_store import tracking_uri

    work_dir = os.path.abspath(cfg.runner.work_dir)
    cfg = cfg.replace(
        runner__work_dir=work_dir, index__path=cfg.index.path or os.path.join(work_dir, "index")
    )
    return cfg.replace(tracking__tracking_uri=tracking_uri(cfg))


def with_demo_inputs(cfg: Config) -> tuple[Config, object]:
    """Writes the demo web into `<work_dir>/demo`; fills the empty input keys from it.

    Returns:
        The filled config and the `DemoWeb` written.
    """
    from alignpipe.demo.demo_web import write_demo_web

    demo_dir = os.path.join(cfg.runner.work_dir, "demo")
    demo = write_demo_web(demo_dir)
    fills = {
        "eval__retrieval_sets": (cfg.eval.retrieval_sets, (f"{DEMO_RETRIEVAL}={demo.retrieval_set}",)),
        "eval__classification_sets": (
            cfg.eval.classification_sets,
            (f"{DEMO_CLASSIFICATION}={demo.classification_set}",),
        ),
        "filter__unsafe_image_blocklist": (cfg.filter.unsafe_image_blocklist, demo.unsafe_image_blocklist),
    }
    return cfg.replace(**{key: current or default for key, (current, default) in fills.items()}), demo


@contextlib.contextmanager
def demo_site(cfg: Config) -> Iterator[Config]:
    """Serves the demo web when no seeds are configured; yields the config to run."""
    from alignpipe.demo.serve import serve_folder

    if cfg.scrape.seed_urls or cfg.scrape.source != "crawl":
        yield cfg
        return
    cfg, demo = with_demo_inputs(cfg)
    with serve_folder(demo.site_dir) as base_url:
        log.info("serving the demo web from %s at %s", demo.site_dir, base_url)
        # The demo is served on loopback, which a scrape refuses unless allowed explicitly; its
        # images on other hosts (cdn.example.net) stand for CDNs and are never requested.
        networks = tuple(dict.fromkeys(cfg.scrape.allowed_networks + ("127.0.0.1/32",)))
        yield cfg.replace(
            scrape__seed_urls=(base_url,), scrape__allowed_networks=networks, scrape__image_hosts="allowed"
        )


def preflight(cfg: Config) -> None:
    """Fails fast, with one message, on inputs the stages would fail on later."""
    from alignpipe.data.crawl import check_seeds_reachable
    from alignpipe.data.scrape import check_inputs

    check_inputs(cfg.scrape)
    if cfg.scrape.source == "crawl":
        check_seeds_reachable(cfg.scrape)
    from alignpipe.data.eval_sets import classification_sets, retrieval_sets

    if not cfg.eval.retrieval_sets and not cfg.eval.classification_sets:
        raise InputError("nothing to evaluate: set eval.retrieval_sets and/or eval.classification_sets")
    for key, sets in (
        ("eval.retrieval_sets", retrieval_sets(cfg.eval)),
        ("eval.classification_sets", classification_sets(cfg.eval)),
    ):
        for name, path in sets:
            if not fs.exists(path):
                raise InputError(f"{key}: set {name!r} at {path!r} does not exist")


RUNNERS = ("subprocess", "docker")


def host_paths(cfg: Config) -> list[str]:
    """The folders and files on this machine that a task may read or write: the work folder and
    every absolute path the config names that exists (evaluation sets, url lists, blocklists,
    the scrape state...), outermost first, none inside another."""
    values = [cfg.runner.work_dir]
    for value in cfg.flat().values():
        for item in value if isinstance(value, (tuple, list)) else (value,):
            if isinstance(item, str):
                values.append(item.partition("=")[2] if "=" in item and "://" not in item else item)
    paths = sorted({os.path.normpath(v) for v in values if os.path.isabs(v) and os.path.exists(v)})
    return [p for i, p in enumerate(paths) if not any(p.startswith(q.rstrip("/") + "/") for q in paths[:i])]


PACKAGES = ("alignpipe", "components", "pipelines", "trainer")
_DIGEST_IN_IMAGE = "from pipelines.local import code_digest; print(code_digest())"


def code_digest() -> str:
    """A digest of the project's Python sources as installed here (the checkout, or an image's
    site-packages): equal where the code is the same."""
    import hashlib
    import importlib.util

    digest = hashlib.sha256()
    for package in PACKAGES:
        root = os.path.dirname(importlib.util.find_spec(package).origin)
        for folder, dirs, files in sorted(os.walk(root)):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for name in sorted(f for f in files if f.endswith(".py")):
                path = os.path.join(folder, name)
                digest.update(os.path.relpath(path, os.path.dirname(root)).encode() + b"\0")
                with open(path, "rb") as f:
                    digest.update(f.read() + b"\0")
    return digest.hexdigest()[:16]


def docker_runner(cfg: Config):
    """kfp's DockerRunner on the configured images, with what tasks need of this machine.

    Each task runs as the calling user (its outputs are the user's files) on the host network
    (the demo web and a tracking server on 127.0.0.1 are reachable), with the host paths the config
    names bound at the same paths, and without the image's entrypoint (the data image keeps Beam's
    worker entrypoint for Dataflow; kfp gives every task its command).

    Raises:
        AlignPipeError: no Docker engine answers, or an image is not built or holds other code
            than this checkout.
    """
    import docker
    from docker.types import Mount
    from kfp import local

    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as e:
        raise AlignPipeError(
            f"--runner docker: no Docker engine answers ({e}); start one, or run without --runner docker"
        ) from None
    missing = []
    for image in dict.fromkeys((cfg.runner.data_image, cfg.runner.trainer_image)):
        try:
            client.images.get(image)
        except docker.errors.ImageNotFound:
            missing.append(image)
    if missing:
        client.close()
        raise AlignPipeError(
            f"--runner docker: image {', '.join(missing)} is not built (runner.data_image, "
            "runner.trainer_image): run `make docker-images` (with BASE_IMAGE=... where Docker Hub "
            "is out of reach, see infra/README.md)"
        )
    here = code_digest()
    for image in dict.fromkeys((cfg.runner.data_image, cfg.runner.trainer_image)):
        try:
            inside = client.containers.run(
                image, ["python", "-c", _DIGEST_IN_IMAGE], entrypoint=[""], remove=True
            )
        except docker.errors.ContainerError:  # an image older than this check
            inside = b""
        if inside.decode().strip() != here:
            client.close()
            raise AlignPipeError(
                f"--runner docker: image {image} holds other code than this checkout (it was built "
                "before the last change): run `make docker-images` again"
            )
    client.close()
    os.makedirs(cfg.runner.work_dir, exist_ok=True)  # bound before anything is written there
    return local.DockerRunner(
        user=f"{os.getuid()}:{os.getgid()}",
        network_mode="host",
        entrypoint=[""],
        mounts=[Mount(target=p, source=p, type="bind") for p in host_paths(cfg)],
    )


def run_pipeline_locally(cfg: Config, runner: str = "subprocess") -> dict:
    """Runs the whole DAG through `kfp.local`; returns the summary read back from MLflow.

    Args:
        cfg: the run's config.
        runner: `subprocess` (every task in this Python environment) or `docker` (every task in
            the project's images, `runner.data_image` and `runner.trainer_image`).
    """
    from kfp import local

    from pipelines.align_pipeline import build_pipeline
    from pipelines.summary import pipeline_summary

    if runner not in RUNNERS:
        raise InputError(f"unknown local runner {runner!r}; choose one of {list(RUNNERS)}")
    cfg = resolve_paths(cfg)
    # (before the demo web is written: it lies inside the work folder, which the containers see)
    kfp_runner = docker_runner(cfg) if runner == "docker" else local.SubprocessRunner(use_venv=False)
    with demo_site(cfg) as cfg:
        preflight(cfg)
        root = os.path.join(cfg.runner.work_dir, "kfp-root")
        os.makedirs(root, exist_ok=True)
        local.init(runner=kfp_runner, pipeline_root=root)
        # kfp warns about any base image whose name lacks "python"; ours are Python images.
        warnings.filterwarnings("ignore", message="You may be attemping", category=RuntimeWarning)
        started = time.time()
        try:
            build_pipeline(cfg)(config_json=cfg.to_json())
        except RuntimeError as e:
            raise AlignPipeError(f"the pipeline failed: {e} (the failing task's log is above)") from None
        seconds = time.time() - started
    summary = pipeline_summary(cfg, since=started)
    summary["pipeline_seconds"] = seconds
    summary["runner"] = runner
    return summary
