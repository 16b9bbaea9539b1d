import json

import pytest

from alignpipe.errors import ConfigError
from alignpipe.training.processes import ProcessGroup, process_group


def _cluster_spec(pools: dict[str, list[str]], task: str, index: int) -> str:
    # The shape Vertex AI documents for CLUSTER_SPEC (training/distributed-training).
    return json.dumps(
        {"cluster": pools, "environment": "cloud", "task": {"type": task, "index": index}, "job": "{}"}
    )


def test_one_process_without_variables_or_with_a_one_replica_cluster():
    assert process_group({}) is None
    assert (
        process_group({"CLUSTER_SPEC": _cluster_spec({"workerpool0": ["h0:2222"]}, "workerpool0", 0)}) is None
    )


def test_every_replica_of_a_vertex_job_gets_its_own_id_and_the_same_coordinator():
    pools = {"workerpool1": ["w1:2222", "w2:2222", "w3:2222"], "workerpool0": ["w0:2222"]}
    groups = [process_group({"CLUSTER_SPEC": _cluster_spec(pools, "workerpool0", 0)})]
    groups += [process_group({"CLUSTER_SPEC": _cluster_spec(pools, "workerpool1", i)}) for i in range(3)]
    assert groups == [ProcessGroup("w0:2222", 4, i) for i in range(4)]


def test_the_jax_variables_win_and_are_checked():
    spec = _cluster_spec({"workerpool0": ["w0:1", "w1:1"]}, "workerpool0", 1)
    jax_vars = {"JAX_COORDINATOR_ADDRESS": "127.0.0.1:5", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "0"}
    assert process_group({**jax_vars, "CLUSTER_SPEC": spec}) == ProcessGroup("127.0.0.1:5", 2, 0)
    with pytest.raises(ConfigError, match="JAX_PROCESS_ID is not"):
        process_group({"JAX_COORDINATOR_ADDRESS": "127.0.0.1:5", "JAX_NUM_PROCESSES": "2"})
    with pytest.raises(ConfigError, match="not below"):
        process_group({**jax_vars, "JAX_PROCESS_ID": "2"})
    with pytest.raises(ConfigError, match="not whole numbers"):
        process_group({**jax_vars, "JAX_NUM_PROCESSES": "two"})


@pytest.mark.parametrize(
    "spec",
    [
        "not json",
        "{}",
        '{"cluster": {"workerpool0": ["a:1", "b:1"]}}',
        _cluster_spec({"workerpool0": ["a:1", "b:1"]}, "workerpool2", 0),
    ],
)
def test_a_malformed_cluster_spec_is_one_error_naming_it(spec):
    with pytest.raises(ConfigError, match="CLUSTER_SPEC"):
        process_group({"CLUSTER_SPEC": spec})
