"""Offline checks of a Terraform module: parse its HCL with python-hcl2, then test policies on it.

Every check returns a list of problems, each starting with the address of the resource (or
variable, local, output) at fault, e.g. `google_storage_bucket.pipeline: versioning is off`.
A test asserts that the list is empty; a negative test feeds a bad snippet through the same
check and asserts that the problem is found.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path

import hcl2
from hcl2.utils import SerializationOptions

# Plain Python values: quotes stripped, no block markers or comments. Expressions stay
# strings in `${...}`.
_OPTIONS = SerializationOptions(strip_string_quotes=True, explicit_blocks=False, with_comments=False)
_VAR_REF = re.compile(r"\bvar\.([A-Za-z_][A-Za-z0-9_-]*)")
_LOCAL_REF = re.compile(r"\$\{local\.([A-Za-z_][A-Za-z0-9_-]*)\}")
BASIC_ROLES = ("roles/owner", "roles/editor", "roles/viewer")
PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")
# Cloud Run ingress values; "all" is acceptable only because IAM guards the service.
CLOUD_RUN_INGRESS = (
    "INGRESS_TRAFFIC_ALL",
    "INGRESS_TRAFFIC_INTERNAL_ONLY",
    "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
)


@dataclasses.dataclass
class TerraformModule:
    """The top-level blocks of a module's .tf files, keyed by address."""

    resources: dict[str, dict] = dataclasses.field(default_factory=dict)  # "type.name" -> body
    variables: dict[str, dict] = dataclasses.field(default_factory=dict)
    outputs: dict[str, dict] = dataclasses.field(default_factory=dict)
    locals: dict[str, object] = dataclasses.field(default_factory=dict)
    terraform: list[dict] = dataclasses.field(default_factory=list)
    documents: list[dict] = dataclasses.field(default_factory=list)  # every parsed file, whole


def parse_hcl(text: str) -> dict:
    """One .tf file as plain Python values; raises lark's errors on bad syntax."""
    return hcl2.loads(text, serialization_options=_OPTIONS)


def parse_module(sources: dict[str, str]) -> TerraformModule:
    """A module from {file name: HCL text}."""
    module = TerraformModule()
    for text in sources.values():
        doc = parse_hcl(text)
        module.documents.append(doc)
        for block in doc.get("resource", []):
            for kind, named in block.items():
                for name, body in named.items():
                    module.resources[f"{kind}.{name}"] = body
        for block in doc.get("variable", []):
            module.variables.update(block)
        for block in doc.get("output", []):
            module.outputs.update(block)
        for block in doc.get("locals", []):
            module.locals.update(block)
        module.terraform.extend(doc.get("terraform", []))
    return module


def load_module(folder: Path) -> TerraformModule:
    return parse_module({p.name: p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.tf"))})


def strings_in(value: object) -> Iterator[str]:
    """Every string value nested in `value` (map keys excluded)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


def first_block(body: dict, name: str) -> dict:
    """A nested block (hcl2 gives a list of them), or {} when absent."""
    blocks = body.get(name) or [{}]
    return blocks[0] if isinstance(blocks, list) else blocks


def is_one_expression(text: str) -> bool:
    """Whether `text` is a single `${...}` (a computed value, not a template around one)."""
    if not text.startswith("${"):
        return False
    depth = 0
    for i, char in enumerate(text):
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth == 0 and char == "}":
            return i == len(text) - 1
    return False


def substitute_locals(text: str, module: TerraformModule, depth: int = 5) -> str:
    """`text` with each `${local.NAME}` that is a string template put in its place, nested ones
    too; locals computed by an expression (a conditional, a function call) stay as they are."""

    def value(match: re.Match) -> str:
        local = module.locals.get(match[1])
        if not isinstance(local, str) or is_one_expression(local):
            return match[0]
        return substitute_locals(local, module, depth - 1) if depth else local

    return _LOCAL_REF.sub(value, text)


def roles_of(module: TerraformModule, body: dict) -> list[str] | None:
    """The roles an IAM resource grants: a literal `role`, or `each.value` over a local list
    (`for_each = toset(local.NAME)`). None when they cannot be read without running Terraform."""
    role = body.get("role")
    if not isinstance(role, str):
        return None
    if "${" not in role:
        return [role]
    if role in ("${each.value}", "${each.key}"):
        match = re.fullmatch(r"\$\{(?:toset\()?local\.(\w+)\)?\}", str(body.get("for_each", "")))
        listed = module.locals.get(match[1]) if match else None
        if isinstance(listed, list) and all(isinstance(r, str) and "${" not in r for r in listed):
            return listed
    return None


# --- variables -----------------------------------------------------------------------------


def variable_references(module: TerraformModule) -> set[str]:
    """Names of the variables that expressions (`${...}`) refer to, anywhere in the module."""
    return {
        name
        for doc in module.documents
        for text in strings_in(doc)
        if "${" in text
        for name in _VAR_REF.findall(text)
    }


def variable_problems(module: TerraformModule) -> list[str]:
    used = variable_references(module)
    declared = set(module.variables)
    return [f"var.{name}: used but not declared in variables.tf" for name in sorted(used - declared)] + [
        f"var.{name}: declared but never used" for name in sorted(declared - used)
    ]


# --- versions ------------------------------------------------------------------------------


def provider_pin_problems(module: TerraformModule, google_major: int = 6) -> list[str]:
    problems = []
    if not any(block.get("required_version") for block in module.terraform):
        problems.append("terraform: no required_version")
    providers: dict[str, dict] = {}
    for block in module.terraform:
        for required in block.get("required_providers", []):
            providers.update(required)
    if "google" not in providers:
        problems.append("terraform.required_providers: google is not declared")
    for name, spec in providers.items():
        if not isinstance(spec, dict) or not spec.get("source") or not spec.get("version"):
            problems.append(f"terraform.required_providers.{name}: needs both source and version")
    google = str(providers.get("google", {}).get("version", ""))
    if google and not re.fullmatch(rf"~>\s*{google_major}(\.\d+)*", google):
        problems.append(f"terraform.required_providers.google: version {google!r} is not ~> {google_major}")
    return problems


# --- IAM -----------------------------------------------------------------------------------


def basic_role_problems(module: TerraformModule) -> list[str]:
    """Owner, editor and viewer: listed in any resource or local, or granted through one."""
    places = {**module.resources, **{f"local.{k}": v for k, v in module.locals.items()}}
    problems = [
        f"{address}: grants the basic role {role}"
        for address, body in places.items()
        for text in strings_in(body)
        for role in BASIC_ROLES
        if re.search(rf"{re.escape(role)}\b", text)
    ]
    for address, body in module.resources.items():
        for role in roles_of(module, body) or []:
            if role in BASIC_ROLES and f"{address}: grants the basic role {role}" not in problems:
                problems.append(f"{address}: grants the basic role {role}")
    return problems


def public_member_problems(module: TerraformModule) -> list[str]:
    """allUsers / allAuthenticatedUsers in a resource, a local or a variable's default; and
    IAM members taken from a variable that does not reject them."""
    places = {
        **module.resources,
        **{f"local.{k}": v for k, v in module.locals.items()},
        **{f"var.{k}": v.get("default") for k, v in module.variables.items()},
    }
    problems = [
        f"{address}: names the public principal {member}"
        for address, body in places.items()
        for text in strings_in(body)
        for member in PUBLIC_MEMBERS
        if member in text
    ]
    for address, body in module.resources.items():
        if body.get("member") not in ("${each.value}", "${each.key}"):
            continue
        match = re.fullmatch(r"\$\{(?:toset\()?var\.(\w+)\)?\}", str(body.get("for_each", "")))
        if not match:
            continue
        conditions = " ".join(
            str(v.get("condition", "")) for v in module.variables.get(match[1], {}).get("validation", [])
        )
        if not all(member in conditions for member in PUBLIC_MEMBERS):
            problems.append(
                f"{address}: members come from var.{match[1]}, "
                f"whose validation does not reject {PUBLIC_MEMBERS}"
            )
    return problems


def project_role_problems(module: TerraformModule, allowed: set[str]) -> list[str]:
    """Project-level grants: additive members only, roles from `allowed`, never storage roles
    (those belong on the bucket)."""
    problems = []
    for address, body in module.resources.items():
        kind = address.split(".")[0]
        if kind in ("google_project_iam_binding", "google_project_iam_policy"):
            problems.append(f"{address}: authoritative project IAM would remove grants made elsewhere")
        if kind not in ("google_project_iam_member", "google_project_iam_binding"):
            continue
        roles = roles_of(module, body)
        if roles is None:
            problems.append(
                f"{address}: its roles cannot be read statically; keep them literal or in a local list"
            )
            continue
        for role in roles:
            if role.startswith("roles/storage."):
                problems.append(f"{address}: {role} at project level; grant it on the bucket")
            elif role not in allowed:
                problems.append(f"{address}: {role} is not in the project-level allowlist {sorted(allowed)}")
    return problems


# --- resources -----------------------------------------------------------------------------


def of_kind(module: TerraformModule, kind: str) -> dict[str, dict]:
    return {a: b for a, b in module.resources.items() if a.split(".")[0] == kind}


def bucket_problems(module: TerraformModule) -> list[str]:
    problems = []
    for address, body in of_kind(module, "google_storage_bucket").items():
        if body.get("uniform_bucket_level_access") is not True:
            problems.append(f"{address}: uniform_bucket_level_access is not true")
        if body.get("public_access_prevention") != "enforced":
            problems.append(f'{address}: public_access_prevention is not "enforced"')
        if first_block(body, "versioning").get("enabled") is not True:
            problems.append(f"{address}: versioning is not enabled")
    return problems


def dataflow_lifecycle_prefixes(module: TerraformModule, address: str) -> set[str]:
    """Object prefixes that a bucket's Delete lifecycle rules clean, locals substituted."""
    body = module.resources[address]
    return {
        substitute_locals(prefix, module)
        for rule in body.get("lifecycle_rule", [])
        if first_block(rule, "action").get("type") == "Delete"
        for prefix in first_block(rule, "condition").get("matches_prefix", [])
    }


def cloud_sql_problems(module: TerraformModule) -> list[str]:
    problems = []
    for address, body in of_kind(module, "google_sql_database_instance").items():
        settings = first_block(body, "settings")
        if body.get("deletion_protection") is not True:
            problems.append(f"{address}: deletion_protection is not true")
        if first_block(settings, "backup_configuration").get("enabled") is not True:
            problems.append(f"{address}: settings.backup_configuration.enabled is not true")
        network = first_block(settings, "ip_configuration")
        for allowed in network.get("authorized_networks", []):
            problems.append(
                f"{address}: authorized network {allowed.get('value')!r}; connect through the connector"
            )
        if network.get("ipv4_enabled", True) and network.get("ssl_mode") not in (
            "ENCRYPTED_ONLY",
            "TRUSTED_CLIENT_CERTIFICATE_REQUIRED",
        ):
            problems.append(f"{address}: a public address without ssl_mode ENCRYPTED_ONLY")
    return problems


def cloud_run_problems(module: TerraformModule) -> list[str]:
    """Cloud Run services stay behind IAM: a known ingress, IAM checks on, an own identity, and
    no public invoker."""
    problems = []
    for address, body in of_kind(module, "google_cloud_run_v2_service").items():
        if body.get("ingress") not in CLOUD_RUN_INGRESS:
            problems.append(f"{address}: ingress {body.get('ingress')!r} is not one of {CLOUD_RUN_INGRESS}")
        if body.get("invoker_iam_disabled") is True:
            problems.append(f"{address}: invoker_iam_disabled lets anyone call it")
        if "google_service_account." not in str(first_block(body, "template").get("service_account", "")):
            problems.append(f"{address}: runs as the default compute account; give it its own")
    for address, body in module.resources.items():
        if address.startswith(("google_cloud_run_v2_service_iam", "google_cloud_run_service_iam")):
            for member in PUBLIC_MEMBERS:
                if any(member in text for text in strings_in(body)):
                    problems.append(f"{address}: makes the service publicly invokable ({member})")
    return problems
