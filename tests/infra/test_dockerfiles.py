"""infra/docker, checked statically: every base image pinned, the versions that must agree with
pyproject.toml agree, each image runs as a non-root user (but the data image, whose Dataflow
workers run as root as in the Beam SDK image), pip keeps no cache, nothing secret is baked in,
and .dockerignore keeps local state out of the build context while letting in what the images
copy. Nothing is built (that needs a Docker engine and the base images' registry).
Each check is also fed a bad Dockerfile to show that it fails."""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "infra" / "docker"
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))
KEPT_OUT_OF_THE_CONTEXT = (
    ".git/HEAD .venv/bin/python alignpipe-work/x mlruns/0/meta.yaml mlflow.db tests/conftest.py"
    " alignpipe/__pycache__/config.cpython-311.pyc alignpipe.egg-info/PKG-INFO"
    " infra/terraform/terraform.tfstate infra/terraform/prod.tfvars"
).split()

# pip options whose value is the next token (not a requirement).
PIP_VALUE_OPTIONS = set(
    "-c --constraint -r --requirement -f --find-links -i --index-url --extra-index-url"
    " -t --target --prefix --root --platform --python-version".split()
)
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|CREDENTIAL|API_KEY|PRIVATE_KEY", re.IGNORECASE)
URL_WITH_PASSWORD = re.compile(r"://[^/\s:@'\"]+:[^/\s@'\"]+@")
# Which DBAPI module each SQLAlchemy driver name needs, and which distributions provide it.
POSTGRES_DRIVERS = {"psycopg2": {"psycopg2", "psycopg2-binary"}, "psycopg": {"psycopg", "psycopg-binary"}}


@dataclasses.dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, ...
    args: str  # continuation lines joined as Docker joins them
    line: int  # where the instruction starts (1-based)


def parse_dockerfile(text: str) -> list[Instruction]:
    """The instructions of a Dockerfile (no heredocs): comments dropped, continuations joined."""
    out: list[Instruction] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # also inside a continued instruction, where Docker drops comment lines
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += raw.rstrip()[:-1]
            continue
        keyword, _, args = (pending + raw).strip().partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start))
        pending = ""
    return out


def arg_defaults(instructions: list[Instruction], *, before_first_from: bool = False) -> dict[str, str]:
    """`ARG NAME=default` values (all of them, or only the global ones that FROM can use)."""
    values: dict[str, str] = {}
    for ins in instructions:
        if ins.keyword == "FROM" and before_first_from:
            break
        if ins.keyword == "ARG" and "=" in ins.args:
            name, _, default = ins.args.partition("=")
            values[name.strip()] = substitute(default.strip().strip("\"'"), values)  # as Docker does
    return values


def substitute(text: str, values: dict[str, str]) -> str:
    """`$NAME` / `${NAME}` replaced from `values`; unknown names are left as written."""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values.get(m.group(1) or m.group(2), m.group(0)), text)


def base_images(instructions: list[Instruction]) -> list[tuple[str, str | None, int]]:
    """(image as resolved from the global ARG defaults, stage name, line) of every FROM."""
    values = arg_defaults(instructions, before_first_from=True)
    bases = []
    for ins in instructions:
        if ins.keyword == "FROM":
            words = [w for w in ins.args.split() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            bases.append((substitute(words[0], values), name, ins.line))
    return bases


def unpinned_base_problems(text: str) -> list[str]:
    """FROM lines without a digest or a full x.y.z version tag (`latest`, `3.11-slim`, none)."""
    problems, stages = [], set()
    for image, stage, line in base_images(parse_dockerfile(text)):
        if image in stages or image == "scratch":
            pass
        elif "$" in image:
            problems.append(f"line {line}: FROM {image}: an ARG without a default")
        elif "@sha256:" not in image:
            tag = image.rpartition("/")[2].partition(":")[2]
            if not re.match(r"\d+\.\d+\.\d+", tag):
                problems.append(f"line {line}: FROM {image}: not pinned (need x.y.z tag or digest)")
        if stage:
            stages.add(stage)
    return problems


def final_stage(instructions: list[Instruction]) -> list[Instruction]:
    starts = [i for i, ins in enumerate(instructions) if ins.keyword == "FROM"]
    return instructions[starts[-1] :] if starts else instructions


def user_problems(text: str) -> list[str]:
    """The final stage must end as a user other than root."""
    user = final_user(text)
    if user is None:
        return ["no USER in the final stage: the image runs as root"]
    return [f"USER {user}: root"] if user.partition(":")[0] in ("root", "0") else []


def final_user(text: str) -> str | None:
    users = [ins.args for ins in final_stage(parse_dockerfile(text)) if ins.keyword == "USER"]
    return users[-1] if users else None


def pip_install_commands(instructions: list[Instruction]) -> list[tuple[str, int]]:
    """(command, line) of each `pip install` in the RUN instructions."""
    commands = []
    for ins in instructions:
        if ins.keyword == "RUN":
            for part in re.split(r"&&|\|\||;|\|", ins.args):
                if re.search(r"\bpip3?\s+install\b", part):
                    commands.append((part.strip(), ins.line))
    return commands


def pip_cache_problems(text: str) -> list[str]:
    return [
        f"line {line}: {command[:60]}: no --no-cache-dir"
        for command, line in pip_install_commands(parse_dockerfile(text))
        if "--no-cache-dir" not in command.split()
    ]


def requirements(text: str) -> tuple[dict[str, str], list[str]]:
    """Packages that `pip install` names: {name: version} of the `==` pins, and the unpinned ones.

    Versions are resolved from the ARG defaults; `.` and paths are the project (pinned by
    pyproject.toml) and not counted."""
    instructions = parse_dockerfile(text)
    values = arg_defaults(instructions)
    pinned, unpinned = {}, []
    for command, line in pip_install_commands(instructions):
        words = shlex.split(substitute(command, values))
        words = words[words.index("install") + 1 :]
        skip = False
        for word in words:
            if skip or word.startswith("-") or word.startswith((".", "/")):
                skip = word in PIP_VALUE_OPTIONS
                continue
            name, sep, version = word.partition("==")
            name = re.sub(r"\[.*\]", "", name).lower().replace("_", "-")
            if sep and re.fullmatch(r"[\w.+!-]+", version):
                pinned[name] = version
            else:
                unpinned.append(f"line {line}: {word}: not pinned with ==")
    return pinned, unpinned


def secret_problems(text: str) -> list[str]:
    problems = []
    for ins in parse_dockerfile(text):
        if ins.keyword in ("ENV", "ARG"):
            names = re.findall(r"(\w+)=", ins.args) or ins.args.split()[:1]
            problems += [
                f"line {ins.line}: {ins.keyword} {n}: a secret?" for n in names if SECRET_NAME.search(n)
            ]
        if URL_WITH_PASSWORD.search(ins.args):
            problems.append(f"line {ins.line}: a URL with a password")
    return problems


def exec_form(instructions: list[Instruction], keyword: str) -> list[str] | None:
    """The last ENTRYPOINT / CMD of the final stage in exec (JSON) form; None when absent."""
    found = [ins.args for ins in final_stage(instructions) if ins.keyword == keyword]
    return json.loads(found[-1]) if found else None


def postgres_driver_problem(uri_scheme: str, pins: dict[str, str]) -> str | None:
    """Whether an image with `pins` can open a `uri_scheme://` backend store: SQLAlchemy reads
    a bare `postgresql` as psycopg2 up to 2.0 and as psycopg (3) from 2.1 on."""
    driver = uri_scheme.partition("+")[2]
    if not driver:
        version = tuple(int(p) for p in pins.get("sqlalchemy", "99.0").split(".")[:2])
        driver = "psycopg2" if version < (2, 1) else "psycopg"
    if POSTGRES_DRIVERS.get(driver, set()) & set(pins):
        return None
    return f"{uri_scheme}:// needs {driver} (SQLAlchemy {pins.get('sqlalchemy', 'unpinned')}), not installed"


def dockerignore_matcher(text: str) -> Callable[[str], bool]:
    """A function path -> excluded?, after Docker's rules: patterns from the context root, `**`
    across folders, a folder excludes what is in it, the last matching pattern (or `!`) wins."""
    wildcards = {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}
    rules = []
    for raw in text.splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        keep = pattern.startswith("!")
        tokens = re.findall(r"\*\*/|\*\*|\*|\?|\[[^\]]*\]|[^*?\[]+", pattern.lstrip("!").strip("/"))
        regex = "".join(wildcards.get(t) or (t if t.startswith("[") else re.escape(t)) for t in tokens)
        rules.append((re.compile(regex), keep))

    def excluded(path: str) -> bool:
        parts = path.strip("/").split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        verdict = False
        for regex, keep in rules:
            if any(regex.fullmatch(p) for p in prefixes):
                verdict = not keep
        return verdict

    return excluded


def copy_sources(instructions: list[Instruction]) -> list[str]:
    sources = []
    for ins in instructions:
        if ins.keyword in ("COPY", "ADD") and "--from=" not in ins.args:
            words = [w for w in shlex.split(ins.args) if not w.startswith("--")]
            sources += words[:-1]
    return sources


def pyproject() -> tuple[dict[str, str], str]:
    """pyproject.toml's `==` pins {name: version} and its Python minor version (e.g. 3.11)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pins = {}
    for dep in project["dependencies"]:
        match = re.fullmatch(r"([\w.-]+)(?:\[[\w,]+\])?==([\w.]+)", dep.replace(" ", ""))
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins, re.search(r">=\s*(\d+\.\d+)", project["requires-python"]).group(1)


def backend_store_scheme() -> str:
    """The scheme of the backend store URI that infra/terraform/mlflow.tf gives the server."""
    terraform = (ROOT / "infra" / "terraform" / "mlflow.tf").read_text(encoding="utf-8")
    return re.search(r"--backend-store-uri\s+\\?\"?([\w+]+)://", terraform).group(1)


def data_image_problems(text: str) -> list[str]:
    """The Beam SDK image of pyproject's apache-beam pin and Python, started through boot."""
    pins, python = pyproject()
    expected = f"apache/beam_python{python}_sdk:{pins['apache-beam']}"
    instructions = parse_dockerfile(text)
    images = [image for image, _, _ in base_images(instructions)]
    problems = [] if images == [expected] else [f"FROM {images}: not {expected} (the apache-beam pin)"]
    if exec_form(instructions, "ENTRYPOINT") != ["/opt/apache/beam/boot"]:
        problems.append("ENTRYPOINT: not Beam's /opt/apache/beam/boot (Dataflow starts workers with it)")
    if final_user(text) not in (None, "root", "0", "root:root", "0:0"):
        problems.append(f"USER {final_user(text)}: {RUN_AS_ROOT['data.Dockerfile']}")
    return problems


def trainer_image_problems(text: str) -> list[str]:
    """No ENTRYPOINT (kfp and custom jobs give the command), unbuffered logs, ACCELERATOR=cpu by
    default, and each accelerator build (tpu, gpu) installing pyproject's extra of that name, which
    pins JAX with libtpu or with the CUDA 12 wheels, at one JAX version."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project.get("optional-dependencies", {})
    instructions = parse_dockerfile(text)
    problems = [] if exec_form(instructions, "ENTRYPOINT") is None else ["an ENTRYPOINT"]
    if not any(i.keyword == "ENV" and "PYTHONUNBUFFERED=1" in i.args for i in instructions):
        problems.append("no ENV PYTHONUNBUFFERED=1")
    if arg_defaults(instructions).get("ACCELERATOR") != "cpu":
        problems.append("ARG ACCELERATOR: the default is not cpu")
    runs = [i for i in instructions if i.keyword == "RUN" and "optional-dependencies" in i.args]
    if len(runs) != 1 or "$ACCELERATOR" not in runs[0].args or "--requirement" not in runs[0].args:
        problems.append("no RUN that installs pyproject's optional-dependencies of $ACCELERATOR")
    elif not re.search(r"\bcpu\|tpu\|gpu\)", runs[0].args):
        problems.append("ACCELERATOR: not every one of cpu, tpu and gpu is accepted")
    expected = {"tpu": "jax[tpu]", "gpu": "jax[cuda12]"}
    pins = {
        name: [r for r in extras.get(name, []) if r.startswith(want + "==")]
        for name, want in expected.items()
    }
    if not all(pins.values()):
        problems.append(f"pyproject.toml's extras do not pin {sorted(expected.values())}: {extras}")
    elif len({r.partition("==")[2] for found in pins.values() for r in found}) != 1:
        problems.append(f"the tpu and gpu extras pin different JAX versions: {pins}")
    if "tensorflow-tpu" in text:
        problems.append(
            "tensorflow-tpu: the TPU images run JAX (and no tensorflow-tpu matches the tensorflow pin)"
        )
    return problems


def mlflow_image_problems(text: str) -> list[str]:
    """pyproject's mlflow pin, the driver of mlflow.tf's backend store URI, port 8080, no
    ENTRYPOINT (Cloud Run gives the command)."""
    pins, _ = pyproject()
    instructions = parse_dockerfile(text)
    installed, _ = requirements(text)
    problems = [] if installed.get("mlflow") == pins["mlflow"] else [f"mlflow=={installed.get('mlflow')}"]
    problems += [p for p in [postgres_driver_problem(backend_store_scheme(), installed)] if p]
    if not any(i.keyword == "EXPOSE" and "8080" in i.args.split() for i in instructions):
        problems.append("no EXPOSE 8080")
    return problems + ([] if exec_form(instructions, "ENTRYPOINT") is None else ["an ENTRYPOINT"])


POLICY = [
    unpinned_base_problems,
    user_problems,
    pip_cache_problems,
    lambda text: requirements(text)[1],
    secret_problems,
]
# Images that run as root, and why (their own check, in IMAGE_CHECKS, requires it).
RUN_AS_ROOT = {"data.Dockerfile": "Dataflow workers run as root, as in the Beam SDK image"}
IMAGE_CHECKS = {
    "data": data_image_problems,
    "trainer": trainer_image_problems,
    "mlflow": mlflow_image_problems,
}


def dockerfile(name: str) -> str:
    return (DOCKER / f"{name}.Dockerfile").read_text(encoding="utf-8")


def all_problems(name: str, text: str) -> list[str]:
    policy = [c for c in POLICY if not (c is user_problems and f"{name}.Dockerfile" in RUN_AS_ROOT)]
    checks = policy + [IMAGE_CHECKS.get(name, lambda _: [])]
    return [problem for check in checks for problem in check(text)]


# --- the images ---------------------------------------------------------------------------------


def test_the_images_are_there():
    assert {p.name.removesuffix(".Dockerfile") for p in DOCKERFILES} >= set(IMAGE_CHECKS)


@pytest.mark.parametrize(
    "check",
    POLICY,
    ids=["bases-pinned", "non-root-user", "pip-no-cache", "requirements-pinned", "no-secrets"],
)
@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_policy(path, check):
    if check is user_problems and path.name in RUN_AS_ROOT:
        pytest.skip(RUN_AS_ROOT[path.name])
    problems = check(path.read_text(encoding="utf-8"))
    assert not problems, f"{path.name}:\n" + "\n".join(problems)


@pytest.mark.parametrize("name", sorted(IMAGE_CHECKS))
def test_each_image_agrees_with_pyproject_and_with_what_runs_it(name):
    problems = IMAGE_CHECKS[name](dockerfile(name))
    assert not problems, f"{name}.Dockerfile:\n" + "\n".join(problems)


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_each_image_runs_the_python_that_pyproject_requires(path):
    _, python = pyproject()
    (image, _, _), *_ = base_images(parse_dockerfile(path.read_text(encoding="utf-8")))
    assert re.search(rf"(?:^python:|beam_python){re.escape(python)}[._]", image), (
        f"{path.name}: FROM {image}: not Python {python}"
    )


def test_dockerignore_keeps_local_state_out_and_lets_the_copied_files_in():
    excluded = dockerignore_matcher((ROOT / ".dockerignore").read_text(encoding="utf-8"))
    for path in KEPT_OUT_OF_THE_CONTEXT:
        assert excluded(path), f".dockerignore: {path} would be sent"
    for path in DOCKERFILES:
        for source in copy_sources(parse_dockerfile(path.read_text(encoding="utf-8"))):
            files = [ROOT / source] if (ROOT / source).is_file() else (ROOT / source).rglob("*")
            for file in files:
                relative = file.relative_to(ROOT).as_posix()
                if file.is_file() and "__pycache__" not in relative:
                    assert not excluded(relative), f"{path.name} copies {relative}, .dockerignore drops it"


# --- each check fails on a bad Dockerfile --------------------------------------------------------

BAD = """\
ARG BASE=python:3.11-slim
FROM ${BASE} AS build
FROM ${UNSET}
FROM ubuntu:latest
FROM python
FROM build
ARG TF=2.20.0
ENV DB_PASSWORD=hunter2
RUN pip install requests && \\
    python -m pip install --no-cache-dir "flask==3.1.0" tensorflow-tpu==${TF} \\
    && echo postgresql://mlflow:hunter2@/mlflow
USER root
"""


def test_the_checks_catch_a_bad_dockerfile():
    assert len(unpinned_base_problems(BAD)) == 4  # 3.11-slim, an unset ARG, latest, no tag
    assert user_problems(BAD) == ["USER root: root"]
    assert user_problems("FROM python:3.11.17-slim\nUSER 10001\nFROM scratch\n") != []
    assert [p.split(":")[0] for p in pip_cache_problems(BAD)] == ["line 9"]
    pinned, unpinned = requirements(BAD)
    assert pinned == {"flask": "3.1.0", "tensorflow-tpu": "2.20.0"}  # != the tensorflow pin
    assert unpinned == ["line 9: requests: not pinned with =="]
    assert len(secret_problems(BAD)) == 2  # the ENV name and the URL's password


@pytest.mark.parametrize(
    "name, pattern, replacement",
    [
        ("data", r"BEAM_VERSION=\S+", "BEAM_VERSION=0.0.1"),
        ("data", r"USER root", "USER 10001:10001"),
        ("trainer", r"USER \S+", "USER root"),
        ("data", r"ENTRYPOINT .*", ""),
        ("trainer", r"ACCELERATOR=cpu", "ACCELERATOR=tpu"),
        ("trainer", r"cpu\|tpu\|gpu\)", "cpu|tpu)"),
        ("trainer", r"\['optional-dependencies'\]", ""),
        ("trainer", r"--no-cache-dir", ""),
        ("mlflow", r"MLFLOW_VERSION=\S+", "MLFLOW_VERSION=0.0.1"),
        ("mlflow", r"sqlalchemy==\S+", "sqlalchemy==2.1.9"),
        ("mlflow", r"python:3\.11\.\d+-slim-\w+", "python:3.11-slim"),
    ],
)
def test_the_checks_catch_a_changed_dockerfile(name, pattern, replacement):
    text, count = re.subn(pattern, replacement, dockerfile(name))
    assert count, f"{name}.Dockerfile: no {pattern} to change"
    assert all_problems(name, text), f"{name}.Dockerfile with {pattern} -> {replacement!r}: no problem found"


def test_the_checks_accept_what_they_should():
    good = "ARG V=2.77.0\nFROM apache/beam_python3.11_sdk:${V} AS base\nFROM base\nUSER 10001:10001\n"
    assert unpinned_base_problems(good) == [] and user_problems(good) == []
    assert unpinned_base_problems("FROM python@sha256:" + "0" * 64) == []
    assert (
        requirements("FROM x\nRUN pip install --no-cache-dir -c /tmp/c.txt -f https://x/i.html .\n")[1] == []
    )


def test_the_postgres_driver_check():
    psycopg2, psycopg3 = {"psycopg2-binary": "2.9.13"}, {"psycopg": "3.3.9"}
    assert postgres_driver_problem("postgresql", psycopg2)  # SQLAlchemy unpinned: 2.1+, psycopg 3
    assert postgres_driver_problem("postgresql", psycopg2 | {"sqlalchemy": "2.1.9"})
    assert not postgres_driver_problem("postgresql", psycopg2 | {"sqlalchemy": "2.0.58"})
    assert not postgres_driver_problem("postgresql", psycopg3)
    assert not postgres_driver_problem("postgresql+psycopg2", psycopg2)


def test_the_dockerignore_matcher():
    excluded = dockerignore_matcher("build\n**/*.py[co]\ndocs\n!docs/keep.md\n")
    assert excluded("build/lib/x.py") and excluded("a/b/c.pyc") and excluded("c.pyo")
    assert not excluded("a/b/c.py")
    assert excluded("docs/other.md") and not excluded("docs/keep.md")
    assert not excluded("alignpipe/build.py") and not excluded("rebuild")
