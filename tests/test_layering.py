"""The core package stays pure: no orchestration, cloud or tracking imports."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import alignpipe


def test_core_imports_neither_kfp_nor_aiplatform_nor_mlflow():
    modules = [m.name for m in pkgutil.walk_packages(alignpipe.__path__, "alignpipe.")]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('kfp', 'mlflow')"
        " or m.startswith('google.cloud.aiplatform')]\n"
        "print(','.join(sorted(bad)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    assert len(modules) >= 10


def test_real_data_path_does_not_import_the_demo():
    modules = [m.name for m in pkgutil.walk_packages(alignpipe.__path__, "alignpipe.")]
    data = [m for m in modules if m.startswith(("alignpipe.data", "alignpipe.filtering"))]
    code = (
        "import importlib, sys\n"
        f"for m in {data!r}: importlib.import_module(m)\n"
        "print(','.join(sorted(m for m in sys.modules if m.startswith('alignpipe.demo'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
