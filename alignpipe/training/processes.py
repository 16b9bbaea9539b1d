"""Which processes form one training run: read from the environment the platform sets.

A run on several VMs (a multi-host TPU slice, several GPU VMs) is one JAX program in one
process per VM, joined through `jax.distributed.initialize`. Each process learns its place
from the first of:

1. `JAX_COORDINATOR_ADDRESS` (`host:port` of process 0), `JAX_NUM_PROCESSES`, `JAX_PROCESS_ID`:
   set by hand, or by a launcher.
2. `CLUSTER_SPEC`: the JSON Vertex AI sets on every replica of a custom job with more than one
   replica, `{"cluster": {"workerpool0": ["host:port", ...], "workerpool1": [...]},
   "task": {"type": "workerpool1", "index": 0}}`. Process ids follow the pools in order
   (`workerpool0` first) and the replicas in each; the coordinator is the first replica of
   `workerpool0`, on the port Vertex AI lists for it.

Neither set: one process, or, on a multi-host TPU slice whose VMs know their slice (Cloud
TPU VMs publish it in their metadata), `jax.distributed.initialize()` without arguments, which
JAX resolves there itself (`AUTO_DETECT`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping

from alignpipe.errors import ConfigError

AUTO_DETECT = "auto"


@dataclasses.dataclass(frozen=True)
class ProcessGroup:
    """This process's place in a multi-process run."""

    coordinator: str  # host:port of process 0
    num_processes: int
    process_id: int


def _from_jax_variables(environ: Mapping[str, str]) -> ProcessGroup:
    names = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")
    missing = [name for name in names if not environ.get(name)]
    if missing:
        raise ConfigError(f"JAX_COORDINATOR_ADDRESS is set but {', '.join(missing)} is not")
    try:
        group = ProcessGroup(environ[names[0]], int(environ[names[1]]), int(environ[names[2]]))
    except ValueError:
        raise ConfigError(
            f"JAX_NUM_PROCESSES={environ[names[1]]!r} / JAX_PROCESS_ID={environ[names[2]]!r}: "
            "not whole numbers"
        ) from None
    if not 0 <= group.process_id < group.num_processes:
        raise ConfigError(
            f"JAX_PROCESS_ID={group.process_id} is not below JAX_NUM_PROCESSES={group.num_processes}"
        )
    return group


def _from_cluster_spec(text: str) -> ProcessGroup | None:
    try:
        spec = json.loads(text)
        pools = {name: list(hosts) for name, hosts in spec["cluster"].items() if hosts}
        task_type, task_index = spec["task"]["type"], int(spec["task"]["index"])
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ConfigError(f"CLUSTER_SPEC is not the JSON Vertex AI sets ({type(e).__name__}: {e})") from None
    order = sorted(pools, key=lambda name: (len(name), name))  # workerpool0 .. workerpool3
    if sum(len(pools[name]) for name in order) <= 1:
        return None
    if task_type not in pools or not 0 <= task_index < len(pools[task_type]):
        raise ConfigError(f"CLUSTER_SPEC: task {task_type}[{task_index}] is not in its cluster {pools}")
    offset = sum(len(pools[name]) for name in order[: order.index(task_type)])
    return ProcessGroup(pools[order[0]][0], sum(len(pools[name]) for name in order), offset + task_index)


def process_group(environ: Mapping[str, str]) -> ProcessGroup | None:
    """This process's group from `environ` (the rules above), or None for a one-process run.

    Raises:
        ConfigError: the variables are set but incomplete or malformed.

    Example:
        >>> cluster = '"cluster": {"workerpool0": ["w0:2222", "w1:2222"]}'
        >>> process_group({"CLUSTER_SPEC": '{' + cluster + ', "task": {"type": "workerpool0", "index": 1}}'})
        ProcessGroup(coordinator='w0:2222', num_processes=2, process_id=1)
    """
    if environ.get("JAX_COORDINATOR_ADDRESS"):
        return _from_jax_variables(environ)
    if environ.get("CLUSTER_SPEC"):
        return _from_cluster_spec(environ["CLUSTER_SPEC"])
    return None
