"""Every pin of every image exists on the package index, so that a pin nobody published fails here,
not in a Cloud Build: pyproject.toml's dependencies (the data and trainer images), the trainer's
accelerator extras (`tpu`: jax with libtpu, `gpu`: jax with the CUDA 12 wheels, each resolved
with everything it requires, as the image build resolves it) and the pins each Dockerfile names
itself (the MLflow image).

Nothing is downloaded but index pages and metadata: a pin exists when PyPI's simple index (its
JSON form, PEP 691) lists a file of that version; an extra is resolved by pip without installing
(`install --dry-run --report`, on the index's PEP 658 metadata files), ignoring this machine's pip
configuration (local wheel folders and constraints would hide a missing pin). This needs the
package index: the tests are skipped, saying so, only when it cannot be reached; any other
failure fails them.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
import sys
import tomllib
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version

from tests.infra.test_dockerfiles import DOCKERFILES, ROOT, requirements

pytestmark = pytest.mark.large

INDEX = "https://pypi.org/simple"
# What pip says when it cannot reach the index (it then also reports "from versions: none").
UNREACHABLE = (
    "NewConnectionError",
    "Max retries exceeded",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "ConnectTimeout",
    "ProxyError",
    "SSLError",
)


def image_pins() -> dict[str, list[str]]:
    """{image or extra: its pinned requirements}: pyproject.toml's dependencies (the data and
    trainer images), each accelerator extra (`extra:tpu`, `extra:gpu`), each Dockerfile's own."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pins = {"pyproject": list(project["dependencies"])}
    for extra in ("tpu", "gpu"):
        pins[f"extra:{extra}"] = list(project["optional-dependencies"][extra])
    for path in DOCKERFILES:
        own = requirements(path.read_text(encoding="utf-8"))[0]
        if own:
            pins[path.name] = [f"{name}=={version}" for name, version in own.items()]
    return pins


def published_versions(name: str) -> set[Version]:
    """The versions of the files the index lists for `name` (wheels and sdists); skips the test
    when the index is out of reach."""
    request = urllib.request.Request(
        f"{INDEX}/{normalise(name)}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    context = ssl.create_default_context(cafile=os.environ.get("PIP_CERT") or None)
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as response:
            files = json.load(response)["files"]
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return set()  # no such project
        raise
    except (urllib.error.URLError, TimeoutError) as e:
        pytest.skip(f"the package index {INDEX} is unreachable from here: {e}")
    versions = set()
    for file in files:
        try:
            if file["filename"].endswith(".whl"):
                versions.add(parse_wheel_filename(file["filename"])[1])
            else:
                versions.add(parse_sdist_filename(file["filename"])[1])
        except (InvalidWheelFilename, InvalidSdistFilename):
            continue  # eggs, .exe installers and other old formats
    return versions


def missing_pins(pins: list[str]) -> list[str]:
    """The `name==version` pins of which the index has no file."""
    with ThreadPoolExecutor(max_workers=16) as pool:
        found = dict(
            zip(pins, pool.map(lambda pin: published_versions(pin.partition("==")[0]), pins), strict=True)
        )
    return [pin for pin, versions in found.items() if Version(pin.partition("==")[2]) not in versions]


def resolve(pins: list[str], with_dependencies: bool) -> subprocess.Popen:
    """A started `pip install --dry-run` of `pins` against PyPI, its report on stdout."""
    command = [sys.executable, "-m", "pip", "install", "--isolated", "--dry-run", "--ignore-installed"]
    command += ["--quiet", "--report", "-", "--retries", "1", "--timeout", "30"]
    if os.environ.get("PIP_CERT"):  # --isolated drops it: this machine's trust store
        command += ["--cert", os.environ["PIP_CERT"]]
    if not with_dependencies:
        command.append("--no-deps")
    return subprocess.Popen(command + pins, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def resolved(process: subprocess.Popen, what: str) -> dict[str, str]:
    """{name: version} that pip would install; skips when the index is out of reach, fails naming
    the pins that do not exist otherwise."""
    out, err = process.communicate(timeout=600)
    if process.returncode:
        if any(marker in err for marker in UNREACHABLE):
            pytest.skip(f"the package index is unreachable from here: {err.strip().splitlines()[-1]}")
        missing = [
            line for line in err.splitlines() if "No matching distribution" in line or "versions:" in line
        ]
        pytest.fail(
            f"{what}: pins that the package index does not have:\n" + "\n".join(missing or [err[-2000:]])
        )
    return {
        normalise(item["metadata"]["name"]): item["metadata"]["version"]
        for item in json.loads(out)["install"]
    }


def normalise(name: str) -> str:
    """A distribution's name as PEP 503 compares it, without extras."""
    return re.sub(r"[-_.]+", "-", name.split("[")[0]).lower()


def test_every_image_pin_exists_on_the_package_index():
    pins = image_pins()
    extras = {what: resolve(pins[what], with_dependencies=True) for what in pins if what.startswith("extra:")}
    direct = [pin for what, items in pins.items() for pin in items]
    assert missing_pins(direct) == []
    found = {what: resolved(process, what) for what, process in extras.items()}
    for what in extras:
        for requirement in pins[what]:
            name, _, version = requirement.partition("==")
            assert found[what].get(normalise(name)) == version, (what, requirement)
    # The accelerator wheels come from the index too: libtpu, and NVIDIA's CUDA runtime.
    assert {"jaxlib", "libtpu"} <= set(found["extra:tpu"])
    assert {"jax-cuda12-plugin", "nvidia-cudnn-cu12"} <= set(found["extra:gpu"])


def test_a_pin_that_does_not_exist_fails():
    # The TPU build of TensorFlow at the tensorflow pin (PyPI's newest tensorflow-tpu is 2.20.0),
    # and a project that is not there at all.
    assert missing_pins(
        ["tensorflow-tpu==2.21.0", "tensorflow-tpu==2.20.0", "alignpipe-no-such-thing==1.0"]
    ) == [
        "tensorflow-tpu==2.21.0",
        "alignpipe-no-such-thing==1.0",
    ]
    with pytest.raises(pytest.fail.Exception, match=r"tensorflow-tpu==2\.21\.0"):
        resolved(resolve(["tensorflow-tpu==2.21.0"], with_dependencies=True), "the old TPU image")
