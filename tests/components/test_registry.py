"""`components.registry`: the registered model's pip requirements are the distributions its
pyfunc code imports, at the versions installed where it is logged."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import mlflow

from alignpipe.config import load_config
from alignpipe.model.encoder import CONFIG_FILE
from components import stages
from components.registry import MODEL_CODE, MODEL_DISTRIBUTIONS, model_pip_requirements


def test_the_requirements_pin_the_installed_versions():
    assert model_pip_requirements() == [
        f"{name}=={importlib.metadata.version(name)}" for name in MODEL_DISTRIBUTIONS
    ]
    assert f"tensorflow=={importlib.metadata.version('tensorflow')}" in model_pip_requirements()


def test_the_requirements_name_every_distribution_the_pyfunc_imports():
    imported = set()
    for node in ast.walk(ast.parse(Path(MODEL_CODE).read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"mlflow"}  # MLflow adds itself
    providers = importlib.metadata.packages_distributions()
    needed = {re.sub(r"[-_.]+", "-", dist).lower() for top in third_party for dist in providers[top]}
    assert needed == set(MODEL_DISTRIBUTIONS)


def test_the_logged_model_carries_them(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")  # MLflow's usage reports leave 127.0.0.1
    cfg = load_config("local", "tiny", [f"runner.work_dir={tmp_path / 'work'}"])
    model_dir = tmp_path / "model"
    (model_dir / "saved_model").mkdir(parents=True)
    (model_dir / "saved_model" / "saved_model.pb").write_bytes(b"")  # logged, never loaded here
    (model_dir / CONFIG_FILE).write_text(cfg.to_json())

    decision = stages.register_stage(cfg.to_json(), "", str(model_dir), {"set/image_to_text_r1": 0.5})
    path = mlflow.pyfunc.get_model_dependencies(f"models:/{cfg.register.model_name}/{decision['version']}")
    requirements = Path(path).read_text().split()
    assert set(model_pip_requirements()) <= set(requirements)
    assert any(r.startswith("mlflow==") for r in requirements)
