"""pyproject.toml says what the code uses: every third-party module the code imports comes from
a distribution declared there with an exact pin, every pin is imported somewhere (or is listed
below with the reason it is not), and every module of the project imports in a fresh
interpreter. With CI's fresh install from pyproject.toml (`make install`), that shows a new
environment built from pyproject.toml alone runs the project."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import os
import re
import subprocess
import sys
import tomllib
from collections import defaultdict
from functools import cache
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = ("alignpipe", "components", "pipelines", "trainer")
OWN = {*PROJECT_PACKAGES, "tests", "bench"}

# Declared, and imported by no code: run, not imported.
NOT_IMPORTED = {
    "pytest-xdist": "a pytest plugin: `make test` runs `pytest -n auto`",
    "ruff": "the linter and formatter: `make lint`",
    "gcp-storage-emulator": "Cloud Storage for the tests, run as `python -m gcp_storage_emulator`",
}
# Imported by bench/ only and not declared: installed beside the project as the named file says.
BENCH_PEERS = {
    "tfx_bsl": ("bench/tfxio_decode.py", "pip install tfx-bsl==1.21.0"),
    "tensorflow_metadata": ("bench/tfxio_decode.py", "pip install tfx-bsl==1.21.0"),  # tfx-bsl's
    "usearch": ("bench/ann_index.py", "pip install usearch==2.26.6"),
    "scann": ("bench/ann_index.py", "pip install scann==1.4.2"),
    "img2dataset_loopback": ("bench/scrape_vs_peers.py", "../shared/bench/img2dataset_loopback.py"),
}


def normalise(name: str) -> str:
    """A distribution's name as PEP 503 compares it."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject_requirements(extra: str | None = None) -> list[Requirement]:
    """`project.dependencies`, or the named optional dependencies."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    texts = project["dependencies"] if extra is None else project["optional-dependencies"][extra]
    return [Requirement(text) for text in texts]


def declared(extra: str | None = None) -> set[str]:
    return {normalise(r.name) for r in pyproject_requirements(extra)}


def imported_modules(folders: list[Path]) -> dict[str, set[str]]:
    """{dotted module name: files importing it} of the third-party imports in `folders`' .py files.

    Every import counts, also inside functions; `from a.b import c` gives `a.b.c` (c may be a
    name, not a module: `distributions_of` looks for the longest known prefix). Left out: the
    standard library, relative imports, this project's own packages and the modules next to the
    importing file (a script's siblings)."""
    found: dict[str, set[str]] = defaultdict(set)
    for folder in folders:
        for path in sorted(folder.rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [f"{node.module}.{alias.name}" for alias in node.names]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    sibling = (path.parent / f"{top}.py").exists() or (path.parent / top).is_dir()
                    if top not in sys.stdlib_module_names and top not in OWN and not sibling:
                        found[name].add(str(path.relative_to(ROOT)))
    return found


@cache
def _top_level_distributions() -> dict[str, frozenset[str]]:
    """{top-level import name: the distributions that install it}, names normalised."""
    tops = importlib.metadata.packages_distributions()
    return {top: frozenset(map(normalise, dists)) for top, dists in tops.items()}


@cache
def _module_owners(top: str) -> dict[str, frozenset[str]]:
    """{dotted module or package: distributions holding its file (`a/b.py`, `a/b/__init__.py`,
    an extension module)} under a top-level name that several distributions share: a namespace
    package such as `google`, or one package installed by several (mlflow, mlflow-skinny)."""
    owners: dict[str, set[str]] = defaultdict(set)
    for dist in _top_level_distributions()[top]:
        for file in importlib.metadata.distribution(dist).files or []:
            parts = file.parts
            if parts and parts[0] == top and file.suffix in (".py", ".so"):
                name = parts[-1].split(".")[0]
                dotted = parts[:-1] if name == "__init__" else (*parts[:-1], name)
                owners[".".join(dotted)].add(dist)
    return {name: frozenset(dists) for name, dists in owners.items()}


def distributions_of(module: str) -> set[str]:
    """The installed distributions that provide `module` (empty when none does); for a name
    imported from a module (`a.b.name`), those of the module."""
    top = module.split(".")[0]
    dists = _top_level_distributions().get(top, frozenset())
    if len(dists) <= 1:
        return set(dists)
    owners, parts = _module_owners(top), module.split(".")
    for depth in range(len(parts), 0, -1):
        if ".".join(parts[:depth]) in owners:
            return set(owners[".".join(parts[:depth])])
    return set()


def undeclared_imports(imports: dict[str, set[str]], allowed: set[str]) -> list[str]:
    """One line per imported module that no distribution in `allowed` provides."""
    problems = []
    for module, files in sorted(imports.items()):
        dists = distributions_of(module)
        if not dists:
            problems.append(f"{module} (in {sorted(files)[0]}): no installed distribution provides it")
        elif not dists & allowed:
            problems.append(f"{module} (in {sorted(files)[0]}): from {sorted(dists)}, not declared")
    return problems


def unused_pins(pins: set[str], imports: dict[str, set[str]], not_imported: set[str]) -> list[str]:
    """The distributions in `pins` that provide none of `imports` and are not in `not_imported`."""
    used = set().union(*(distributions_of(module) for module in imports))
    return sorted(pins - used - not_imported)


def code_imports() -> dict[str, set[str]]:
    return imported_modules([ROOT / p for p in PROJECT_PACKAGES])


def test_every_requirement_is_pinned_exactly():
    for requirement in pyproject_requirements() + pyproject_requirements("dev"):
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == "==", str(requirement)
        assert requirement.marker is None, str(requirement)


def test_the_code_imports_only_declared_dependencies():
    assert undeclared_imports(code_imports(), declared()) == []


def test_tests_and_benchmarks_import_only_declared_dependencies():
    imports = imported_modules([ROOT / "tests", ROOT / "bench"])
    for top, (where, how) in BENCH_PEERS.items():
        assert how in (ROOT / where).read_text(), f"{where} does not say how {top} is installed"
        peers = [module for module in imports if module.split(".")[0] == top]
        assert peers, f"{top} is listed as a benchmark's peer, but nothing imports it"
        for module in peers:
            assert {f.split("/")[0] for f in imports.pop(module)} == {"bench"}, module
    assert undeclared_imports(imports, declared() | declared("dev")) == []


def test_every_dependency_is_imported_by_the_code():
    assert unused_pins(declared(), code_imports(), set()) == []


def test_every_dev_dependency_is_imported_by_tests_or_benchmarks_or_listed():
    imports = imported_modules([ROOT / "tests", ROOT / "bench"])
    assert unused_pins(declared("dev"), imports, set(NOT_IMPORTED)) == []
    # the list holds no stale entry: each is declared, and imported nowhere
    assert set(NOT_IMPORTED) <= declared("dev")
    assert not set(NOT_IMPORTED) & set().union(*map(distributions_of, imports))


def test_the_checks_fail_on_an_undeclared_import_and_an_unused_pin(tmp_path, monkeypatch):
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "module.py").write_text(
        "import json\nimport numpy as np\n\ndef f():\n    from google.cloud import secretmanager\n"
    )
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    imports = imported_modules([folder])
    assert set(imports) == {"numpy", "google.cloud.secretmanager"}
    assert undeclared_imports(imports, {"numpy"}) == [
        "google.cloud.secretmanager (in code/module.py): from ['google-cloud-secret-manager'], not declared"
    ]
    # provided by apache-beam[gcp]'s extra, but imported directly: it must be declared itself
    assert undeclared_imports(imports, {"numpy", "apache-beam"})
    assert undeclared_imports(imports, {"numpy", "google-cloud-secret-manager"}) == []
    assert unused_pins({"numpy", "pandas", "ruff"}, imports, {"ruff"}) == ["pandas"]


def test_namespace_imports_map_to_the_distribution_that_holds_them():
    assert distributions_of("google.protobuf.descriptor_pool") == {"protobuf"}
    assert distributions_of("google.cloud.aiplatform.constants.base") == {"google-cloud-aiplatform"}
    assert distributions_of("google.auth.credentials.AnonymousCredentials") == {"google-auth"}
    assert distributions_of("yaml") == {"pyyaml"}
    assert distributions_of("kfp") == {"kfp"}  # kfp-pipeline-spec installs kfp/pipeline_spec/ only
    assert "mlflow" in distributions_of("mlflow.pyfunc")  # with mlflow-skinny, which shares its files
    assert distributions_of("no_such_module_anywhere") == set()


# Imports every module of the project's packages, each from this checkout, in one interpreter.
IMPORT_ALL = """
import importlib, json, pkgutil, sys
root, failures, names = sys.argv[1], [], []
for package in sys.argv[2:]:
    module = importlib.import_module(package)
    for info in pkgutil.walk_packages(module.__path__, package + ".", onerror=failures.append):
        try:
            loaded = importlib.import_module(info.name)
        except Exception as error:
            failures.append(f"{info.name}: {error!r}")
            continue
        if not loaded.__file__.startswith(root):
            failures.append(f"{info.name}: imported from {loaded.__file__}, not this checkout")
        names.append(info.name)
print(json.dumps({"modules": names, "failures": failures}))
"""


def test_every_module_of_the_project_imports_in_a_fresh_interpreter():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL, str(ROOT), *PROJECT_PACKAGES],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["failures"] == []
    expected = {
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for package in PROJECT_PACKAGES
        for path in (ROOT / package).rglob("*.py")
    } - set(PROJECT_PACKAGES)
    assert set(result["modules"]) == expected
