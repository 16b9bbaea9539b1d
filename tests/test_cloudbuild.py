"""cloudbuild.yaml, checked offline: the order of its steps, the image tags it uses, its
substitutions, and every `alignpipe` command in it parsed by the real CLI parser (none is run).

Cloud Build's own substitution is imitated: `$NAME` and `${NAME}` take the value of a built-in
or user substitution (user defaults may name others: dynamicSubstitutions), `$$` is a `$` for
the shell. Shell steps then see their `env:`; `$VAR` in a script is expanded from it.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from alignpipe.config import load_config
from pipelines import cli, publish, vertex
from pipelines.align_pipeline import PIPELINE_NAME

ROOT = Path(__file__).resolve().parents[1]
BUILD = yaml.safe_load((ROOT / "cloudbuild.yaml").read_text(encoding="utf-8"))
STEPS = BUILD["steps"]
# A release build: what a tag trigger fills in.
BUILT_IN = {"PROJECT_ID": "my-proj", "SHORT_SHA": "abc1234", "TAG_NAME": "v1.0.0"}
REQUIRED = {"_TRACKING_URI": "https://mlflow.example.org"}  # no default: the build needs a value
NAME = re.compile(r"\$(?:\{(\w+)\}|(\w+))")  # $NAME or ${NAME}
OUR_IMAGE = re.compile(
    r"(?P<repo>[\w.${}/-]+-docker\.pkg\.dev/[\w.${}-]+/[\w${}-]+)/(?P<image>alignpipe-[a-z]+(?:-[a-z]+)?)"
    r"(?::(?P<tag>[\w.${}-]+))?"
)
# What scripts assign themselves: name=$(head -n 1 ...), and kind=$(cat /workspace/trainer-kind),
# the trainer image build that the default experiment's slice runs on.
# release=$(cat /workspace/release-image-tag), the release's image tag (tag: what writes it).
SCRIPT_VALUES = {"name": PIPELINE_NAME, "kind": "tpu", "release": "v1.0.0", "tag": "v1.0.0"}
DOCKER_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")  # Docker's tag grammar


def expand(text: str, values: dict[str, str]) -> str:
    """`$NAME` / `${NAME}` replaced from `values`; a name not there fails the test."""

    def value(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        assert name in values, f"cloudbuild.yaml: ${name} is not set here: {text!r}"
        return values[name]

    return NAME.sub(value, text)


def substitute(text: str, values: dict[str, str]) -> str:
    """Cloud Build's substitution: `$$` stays a literal `$`."""
    return "$".join(expand(part, values) for part in text.split("$$"))


def substitution_values(**built_in: str) -> dict[str, str]:
    """Built-ins (a release build unless overridden) and every user substitution, resolved."""
    values = {**BUILT_IN, **built_in}
    pending = {k: v for k, v in {**BUILD["substitutions"], **REQUIRED}.items() if k not in built_in}
    while pending:
        ready = {k: v for k, v in pending.items() if all(n in values for n in used_names(v))}
        assert ready, f"substitutions that name each other or an undeclared one: {sorted(pending)}"
        values.update({k: substitute(v, values) for k, v in ready.items()})
        pending = {k: v for k, v in pending.items() if k not in ready}
    return values


def used_names(text: str) -> set[str]:
    return {m.group(1) or m.group(2) for part in text.split("$$") for m in NAME.finditer(part)}


def strings(node) -> list[str]:
    if isinstance(node, dict):
        return [s for value in node.values() for s in strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in strings(value)]
    return [node] if isinstance(node, str) else []


def script(step: dict) -> str:
    """A shell step's script ("" for others), as Cloud Build hands it to the shell."""
    return step["args"][-1] if step.get("entrypoint") == "bash" and step["args"][0] == "-c" else ""


def shell_commands(step: dict, values: dict[str, str], program: str) -> list[list[str]]:
    """The command lines of `program` in a shell step, its variables expanded, up to any pipe."""
    env = dict(entry.split("=", 1) for entry in step.get("env", []))
    env = {key: substitute(value, values) for key, value in env.items()}
    text = substitute(script(step), values).replace("\\\n", " ")
    assigned = set(re.findall(r"^\s*(\w+)=", text, re.MULTILINE))
    variables = {**env, **{name: SCRIPT_VALUES[name] for name in assigned}}
    commands = []
    for line in text.splitlines():
        if line.strip().startswith(program + " "):
            lexer = shlex.shlex(expand(line, variables), posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            tokens = list(lexer)
            ends = [i for i, t in enumerate(tokens) if t in ("|", "||", "&&", ";", ">", ">>")]
            commands.append(tokens[: ends[0]] if ends else tokens)
    return commands


def alignpipe_commands(values: dict[str, str]) -> dict[str, list[str]]:
    """Step id -> its `alignpipe` argv (without the program)."""
    found = {}
    for step in STEPS:
        if step.get("entrypoint") == "alignpipe":
            found[step["id"]] = [substitute(arg, values) for arg in step["args"]]
        for command in shell_commands(step, values, "alignpipe"):
            assert step["id"] not in found, f"step {step['id']}: one alignpipe command per step"
            found[step["id"]] = command[1:]
    return found


def step_of(subcommand: str) -> dict:
    (step,) = [
        s for s in STEPS if alignpipe_commands(substitution_values()).get(s["id"], [""])[0] == subcommand
    ]
    return step


def waits_for(step_id: str) -> set[str]:
    """Every step `step_id` starts after: its waitFor, or all steps before it, transitively."""
    ids = [s["id"] for s in STEPS]
    step = STEPS[ids.index(step_id)]
    direct = step.get("waitFor", ids[: ids.index(step_id)])
    direct = [] if direct == ["-"] else direct
    return set(direct).union(*(waits_for(d) for d in direct))


def docker_steps(verb: str) -> list[dict]:
    """Steps that run `docker VERB`, directly or in their script."""
    return [
        s
        for s in STEPS
        if s["name"] == "gcr.io/cloud-builders/docker"
        and (s["args"][0] == verb or f"docker {verb} " in script(s))
    ]


def parse(argv: list[str]):
    try:
        return cli.build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"the CLI refuses {shlex.join(argv)}")


def test_every_alignpipe_command_is_accepted_by_the_cli():
    for built_in in ({}, {"TAG_NAME": ""}):  # a release build and a branch build
        commands = alignpipe_commands(substitution_values(**built_in))
        assert sorted(parse(argv).command for argv in commands.values()) == ["compile", "publish", "schedule"]


def test_tests_run_first_and_images_are_built_pushed_then_used():
    tests = next(s for s in STEPS if "pytest" in script(s))
    builds, pushes = docker_steps("build"), docker_steps("push")
    assert len(builds) == 4 and len(pushes) == 5  # data, trainer, serving, accelerator; its moving tag
    assert all(tests["id"] in waits_for(s["id"]) for s in builds)
    compile_, publish, schedule = (step_of(c) for c in ("compile", "publish", "schedule"))
    moving = [p for p in pushes if "MOVING_TAG" in script(p)]  # the accelerator image's moving tag
    assert {p["id"] for p in pushes if p not in moving} <= waits_for(compile_["id"])
    assert all(publish["id"] in waits_for(p["id"]) for p in moving) and len(moving) == 1
    assert compile_["id"] in waits_for(publish["id"])
    assert schedule is STEPS[-1]
    assert waits_for(schedule["id"]) == {s["id"] for s in STEPS[:-1]}
    # Every step that runs in one of our images starts after that image was pushed.
    for step in STEPS:
        if OUR_IMAGE.fullmatch(step["name"]):
            image = OUR_IMAGE.fullmatch(step["name"])["image"]
            (push,) = [p for p in pushes if f"/{image}" in " ".join(strings(p))]
            assert push["id"] in waits_for(step["id"]), step["id"]


def test_the_tests_step_runs_the_fast_tests_and_the_infra_checks():
    (tests,) = [s for s in STEPS if "pytest" in script(s)]
    values = substitution_values()
    (pip,) = shell_commands(tests, values, "pip")
    assert pip[:2] == ["pip", "install"] and pip[-2:] == ["-e", ".[dev]"]
    pytest_, kind = shell_commands(tests, values, "python")
    assert pytest_[:3] == ["python", "-m", "pytest"]
    assert kind[:2] == ["python", "-c"] and "trainer_image_kind" in kind[2]
    assert pytest_[pytest_.index("-m", 3) + 1] == "not large and not e2e"
    assert {"tests", "tests/infra"} & set(pytest_)


def test_our_images_are_used_by_their_commit_tag():
    values = substitution_values()
    references = [m for text in strings(BUILD) for m in OUR_IMAGE.finditer(text)]
    assert {m["image"] for m in references} == {
        "alignpipe-data",
        "alignpipe-trainer",
        "alignpipe-serving",
        "alignpipe-trainer-tpu",
        "alignpipe-trainer-gpu",
    }
    assert all(m["repo"] == "${_REGION}-docker.pkg.dev/$PROJECT_ID/${_REPO}" for m in references)
    assert "latest" not in {m["tag"] for m in references}  # the moving tag is ${_TAG}, pushed last
    # Pulled (a step's image) only by the commit tag.
    assert {OUR_IMAGE.fullmatch(s["name"])["tag"] for s in STEPS if OUR_IMAGE.fullmatch(s["name"])} == {
        "$SHORT_SHA"
    }
    # Built with the commit tag and the moving one; `images:` pushes those after every step.
    for build in docker_steps("build"):
        if script(build):
            continue  # the accelerator image: below
        args = build["args"]
        tags = [OUR_IMAGE.fullmatch(args[i + 1])["tag"] for i, flag in enumerate(args) if flag == "-t"]
        assert tags == ["$SHORT_SHA", "${_TAG}"], build["id"]
    assert {OUR_IMAGE.fullmatch(i)["tag"] for i in BUILD["images"]} == {"$SHORT_SHA", "${_TAG}"}
    # Pushed before use: the commit tag, and the release tag on a release; the accelerator
    # image's moving tag after the template was published.
    registry = f"{values['_REGION']}-docker.pkg.dev/my-proj/{values['_REPO']}"
    pushed = {
        c[2] for s in docker_steps("push") for c in shell_commands(s, values, "docker") if c[1] == "push"
    }
    assert pushed == {
        f"{registry}/alignpipe-{kind}:{tag}"
        for kind in ("data", "trainer", "serving", "trainer-tpu")
        for tag in ("abc1234", "v1.0.0")
    } | {f"{registry}/alignpipe-trainer-tpu:latest"}


def test_the_accelerator_image_is_built_only_when_the_experiment_asks_for_it(tmp_path):
    """The tests step writes the kind of trainer the experiment's slice runs on; the build step
    builds that ACCELERATOR (nothing for cpu), and compile names the images of every kind."""
    from components.custom_job import trainer_image_kind

    values = substitution_values()
    assert trainer_image_kind(load_config("local", values["_EXPERIMENT"])) == "tpu"
    (build,) = [s for s in docker_steps("build") if script(s)]
    (command,) = [c for c in shell_commands(build, values, "docker") if c[1] == "build"]
    assert command[command.index("--build-arg") + 1] == "ACCELERATOR=tpu"
    assert command[command.index("-f") + 1] == "infra/docker/trainer.Dockerfile"
    assert build["waitFor"] == ["tests"]
    # For a CPU experiment the script stops before any docker command (a stub that would fail).
    (tmp_path / "trainer-kind").write_text("cpu\n")
    stub = "docker() { echo called; exit 99; }\n"
    text = substitute(script(build), values).replace(
        "/workspace/trainer-kind", str(tmp_path / "trainer-kind")
    )
    out = subprocess.run(
        ["bash", "-c", stub + text],
        env={"EXPERIMENT": "tiny", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert (out.returncode, out.stdout) == (0, "the tiny experiment trains on CPUs: no accelerator image\n")
    cfg = load_config(
        "vertex", "tiny", cli._overrides(parse(alignpipe_commands(values)[step_of("compile")["id"]]))
    )
    registry = f"{values['_REGION']}-docker.pkg.dev/my-proj/{values['_REPO']}"
    assert (cfg.runner.trainer_tpu_image, cfg.runner.trainer_gpu_image) == (
        f"{registry}/alignpipe-trainer-tpu:abc1234",
        f"{registry}/alignpipe-trainer-gpu:abc1234",
    )
    assert build["id"] in waits_for(step_of("compile")["id"])


def test_compile_runs_in_the_new_data_image_for_vertex_with_both_commit_images():
    values = substitution_values()
    step = step_of("compile")
    args = parse(alignpipe_commands(values)[step["id"]])
    assert (args.env, args.experiment) == ("vertex", values["_EXPERIMENT"])
    cfg = load_config(args.env, args.experiment, cli._overrides(args))
    registry = f"{values['_REGION']}-docker.pkg.dev/my-proj/{values['_REPO']}"
    assert substitute(step["name"], values) == cfg.runner.data_image == f"{registry}/alignpipe-data:abc1234"
    assert cfg.runner.trainer_image == f"{registry}/alignpipe-trainer:abc1234"
    # The Model Registry uploads name the serving image of the same commit, pushed before compile.
    assert cfg.register.serving_image == f"{registry}/alignpipe-serving:abc1234"
    (push,) = [s for s in docker_steps("push") if "/alignpipe-serving" in " ".join(strings(s))]
    assert push["id"] in waits_for(step["id"])
    (build,) = [s for s in docker_steps("build") if "infra/docker/serving.Dockerfile" in s["args"]]
    assert build["id"] in waits_for(push["id"])
    assert (cfg.runner.gcp_project, cfg.runner.gcp_region) == ("my-proj", values["_REGION"])
    assert cfg.runner.pipeline_root == values["_PIPELINE_ROOT"] == f"gs://my-proj-{values['_REPO']}/pipelines"
    assert cfg.runner.service_account == f"{values['_REPO']}-pipelines@my-proj.iam.gserviceaccount.com"
    assert (cfg.tracking.tracking_uri, cfg.tracking.auth) == (REQUIRED["_TRACKING_URI"], "google_id_token")
    # The data image runs as a non-root user, and /workspace belongs to root: a step before makes
    # the output folder writable.
    folder = os.path.dirname(args.out)
    (maker,) = [s for s in STEPS if re.search(rf"mkdir -p {folder} && chmod 0?777 {folder}\b", script(s))]
    assert maker["id"] in waits_for(step["id"])


@pytest.mark.parametrize(
    ("tag_name", "image_tag"),
    [
        ("v1.0.0", "v1.0.0"),
        ("v1.2+b/x", "v1.2-b-x"),
        ("release/2030.01", "release-2030.01"),
        (".hidden", "v.hidden"),
        ("-rc1", "v-rc1"),
        ("_rc1", "v_rc1"),
        ("v" + "9" * 200, "v" + "9" * 127),
        ("+" * 200, "v" + "-" * 127),
        ("", ""),
    ],
)
def test_a_git_tag_becomes_a_valid_image_tag(tmp_path, tag_name, image_tag):
    """The release-image-tag step's own script, run by bash: git allows '/' and '+' in tags,
    Docker and template tags do not; every push step tags its images with what the step wrote."""
    out = run_step_script("release-image-tag", tmp_path, tag_name)
    assert out.returncode == 0, out.stderr
    written = (tmp_path / "release-image-tag").read_text().strip()
    assert written == image_tag
    assert not written or (DOCKER_TAG.fullmatch(written) and publish.TEMPLATE_TAG.fullmatch(written))
    pushes = [s for s in docker_steps("push") if "release-image-tag" in script(s)]
    assert len(pushes) == 4  # data, trainer, serving, accelerator image
    assert all("TAG_NAME" not in script(s) for s in docker_steps("push"))


def run_step_script(step_id: str, tmp_path, tag_name: str, prelude: str = "") -> subprocess.CompletedProcess:
    """A step's own script run by bash, after `prelude`, with the step's environment as a build
    of git tag `tag_name` gives it and `tmp_path` for /workspace."""
    (step,) = [s for s in STEPS if s["id"] == step_id]
    values = substitution_values(TAG_NAME=tag_name)
    env = dict(entry.split("=", 1) for entry in step.get("env", []))
    env = {key: substitute(value, values) for key, value in env.items()}
    text = prelude + substitute(script(step), values).replace("/workspace/", f"{tmp_path}/")
    return subprocess.run(
        ["bash", "-c", text],
        env={**env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=10,
    )


ARGS_STUB = 'alignpipe() { printf "%s\\n" "$@" > "$ARGS"; echo align; }\nexport ARGS\n'


@pytest.mark.parametrize(("tag_name", "release"), [("v1.0.0", "v1.0.0"), ("v1.2+b/x", "v1.2-b-x"), ("", "")])
def test_publish_and_schedule_name_the_template_by_the_release_images_tag(tmp_path, tag_name, release):
    """The publish and schedule steps' own scripts after the release-image-tag step's, with
    `alignpipe` a function that records its arguments: the git tag reaches the template as the
    images have it, never raw."""
    assert {"release-image-tag"} <= waits_for("publish") & waits_for("schedule")
    assert run_step_script("release-image-tag", tmp_path, tag_name).returncode == 0
    (tmp_path / "pipeline").mkdir()
    prelude = f"ARGS={tmp_path}/publish-args\n" + ARGS_STUB
    out = run_step_script("publish", tmp_path, tag_name, prelude)
    assert out.returncode == 0, out.stderr
    args = parse((tmp_path / "publish-args").read_text().splitlines())
    assert [t for t in dict.fromkeys(args.tag) if t] == ["abc1234", *([release] if release else []), "latest"]
    assert all(publish.TEMPLATE_TAG.fullmatch(t) for t in args.tag if t)
    prelude = f"ARGS={tmp_path}/schedule-args\n" + ARGS_STUB
    out = run_step_script("schedule", tmp_path, tag_name, prelude)
    assert out.returncode == 0, out.stderr
    if not release:
        assert out.stdout == "not a release tag: no schedule\n"
        assert not (tmp_path / "schedule-args").exists()
        return
    args = parse((tmp_path / "schedule-args").read_text().splitlines())
    assert args.template.endswith(f"-templates/align/{release}")
    assert args.display_name == f"align-{release}"


def test_publish_sends_the_compiled_template_to_the_kfp_repository():
    values = substitution_values()
    commands = alignpipe_commands(values)
    compiled = parse(commands[step_of("compile")["id"]])
    args = parse(commands[step_of("publish")["id"]])
    assert args.template == compiled.out
    # infra/terraform names the KFP repository after the Docker one: <name_prefix>-templates.
    assert args.host == f"https://{values['_REGION']}-kfp.pkg.dev/my-proj/{values['_REPO']}-templates"
    assert publish.KFP_REPOSITORY.fullmatch(args.host)
    # (the release's tag as a branch build or a v1.2+b/x tag gives it: the test above)
    assert [t for t in dict.fromkeys(args.tag) if t] == ["abc1234", "v1.0.0", "latest"]


def test_schedule_only_on_a_release_tag_with_the_published_template(tmp_path):
    step = step_of("schedule")
    # A branch build: the script ends before any alignpipe command (a stub that would fail).
    assert run_step_script("release-image-tag", tmp_path, "").returncode == 0
    out = run_step_script("schedule", tmp_path, "", "alignpipe() { echo called; exit 99; }\n")
    assert (out.returncode, out.stdout) == (0, "not a release tag: no schedule\n"), out.stderr
    values = substitution_values()
    args = parse(alignpipe_commands(values)[step["id"]])
    assert (
        args.template
        == f"https://{values['_REGION']}-kfp.pkg.dev/my-proj/{values['_REPO']}-templates/align/v1.0.0"
    )
    schedule = vertex.CronSchedule.parse(args.cron, args.time_zone)
    assert (schedule.cron, schedule.time_zone) == (values["_CRON"], values["_TIME_ZONE"])
    cfg = cli._cloud_config(args)
    vertex.check_vertex_target(cfg)
    assert cfg.runner.service_account == values["_SERVICE_ACCOUNT"]
    assert args.param is None  # the template's defaults, unless _SCHEDULE_PARAMS gives values


def test_a_release_schedule_passes_its_run_parameters():
    params = "--param source=url_list --param input_paths=gs://b/urls.tsv --param overrides=train.steps=5"
    args = parse(alignpipe_commands(substitution_values(_SCHEDULE_PARAMS=params))[step_of("schedule")["id"]])
    assert args.param == [
        "source=url_list",
        "input_paths=gs://b/urls.tsv",
        "overrides=train.steps=5",
    ]


def test_substitutions_are_declared_and_used_and_shell_scripts_take_them_from_env():
    declared = set(BUILD["substitutions"])
    used = set().union(
        *(used_names(s) for s in strings({k: v for k, v in BUILD.items() if k != "substitutions"}))
    )
    used_in_values = set().union(*(used_names(v) for v in BUILD["substitutions"].values()))
    user = {n for n in used | used_in_values if n.startswith("_")}
    assert user <= declared, f"used, not declared: {sorted(user - declared)}"
    # Cloud Build refuses a declared substitution that nothing uses (substitutionOption MUST_MATCH).
    assert declared <= user, f"declared, never used: {sorted(declared - user)}"
    assert (used | used_in_values) - user <= set(BUILT_IN)
    for step in STEPS:  # a value is data to the shell, not code
        assert not used_names(script(step)), f"step {step['id']}: substitution in the script; use env:"
    assert BUILD["options"]["dynamicSubstitutions"] is True
    assert BUILD["options"]["logging"] == "CLOUD_LOGGING_ONLY"
