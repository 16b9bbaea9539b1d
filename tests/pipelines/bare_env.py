"""A virtualenv that holds only some distributions (and their dependencies) of this one.

Tests use it to show that something works without this project installed: the new
environment sees the named distributions and everything they require, linked from the
running environment's site-packages (no download), and nothing else.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
import sysconfig

from packaging.requirements import Requirement


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(requirements: list[str]) -> dict[str, importlib.metadata.Distribution]:
    """The installed distributions `requirements` need, transitively (extras not taken)."""
    found: dict[str, importlib.metadata.Distribution] = {}
    todo = [Requirement(r) for r in requirements]
    while todo:
        req = todo.pop()
        name = _normalise(req.name)
        if name in found:
            continue
        try:
            dist = importlib.metadata.distribution(req.name)
        except importlib.metadata.PackageNotFoundError:
            continue  # an optional dependency for another platform or Python
        found[name] = dist
        for text in dist.requires or []:
            sub = Requirement(text)
            if sub.marker is None or sub.marker.evaluate({"extra": ""}):
                todo.append(sub)
    return found


def _top_level_paths(dist: importlib.metadata.Distribution) -> set[str]:
    """First path components of the distribution's installed files, inside site-packages."""
    tops = set()
    for file in dist.files or []:
        parts = file.parts
        if not parts or parts[0] in ("..", "__pycache__") or parts[0].endswith(".pth"):
            continue
        tops.add(parts[0])
    return tops


def make_bare_venv(root: str, requirements: list[str]) -> str:
    """Creates a virtualenv in `root` with only `requirements`' closure; returns its python.

    Raises:
        RuntimeError: a requirement is not installed in the running environment.
    """
    dists = closure(requirements)
    missing = [r for r in requirements if _normalise(Requirement(r).name) not in dists]
    if missing:
        raise RuntimeError(f"not installed here: {missing}")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", root], check=True)
    python = os.path.join(root, "bin", "python")
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    source = sysconfig.get_paths()["purelib"]
    for dist in dists.values():
        for top in _top_level_paths(dist):
            target = os.path.join(site, top)
            if os.path.exists(os.path.join(source, top)) and not os.path.lexists(target):
                os.symlink(os.path.join(source, top), target)
    return python
