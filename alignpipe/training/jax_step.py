"""The data-parallel training step on the JAX backend: one SPMD program over a device mesh.

The step is a pure function of the training state (the model's and both optimisers'
variables, as arrays) and a global batch, built from Keras 3's stateless API
(`model.stateless_call`, `optimizer.stateless_apply`) and compiled once with `jax.jit`.
The devices form a one-axis `jax.sharding.Mesh` (`"batch"`): every input array is split
along its batch axis over the devices, every variable is replicated. XLA partitions the
program (GSPMD): each device runs the towers on its share of the batch, the `[B, B]`
logits of `ContrastiveLoss` are computed over the global batch (XLA all-gathers the
embeddings, so every replica's examples are negatives, ALIGN section 4.1), BatchNorm
statistics are those of the global batch, and the gradients are all-reduced. The same
function on a one-device mesh is the single-device step; tests/training/test_jax_step.py
checks that both give the same loss, gradients and temperature.

Several steps run per compiled call (`train.steps_per_execution`): the host stacks `k`
batches into `[k, B, ...]` arrays and the step is a `lax.scan` over them, so a TPU is
not idle between the host's calls.

Example:
```python
step = DataParallelStep(model, optimizers, ContrastiveLoss(0.1), batch_mesh())
state = step.initial_state()
state, losses, _ = step.run(state, step.shard(stacked_batches))   # losses: [k]
step.write_back(state)   # into the Keras variables, e.g. before model.save
```
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from jax._src import distributed  # the coordination service's barrier (no public API yet)
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from keras import ops

from alignpipe.model.contrastive_loss import ContrastiveLoss
from alignpipe.model.dual_encoder import DualEncoder
from alignpipe.training.optimizer import Optimizers

BATCH_AXIS = "batch"
COMPILE_BARRIER_TIMEOUT_MS = 30 * 60 * 1000  # a cold compile of a large model takes minutes


def batch_mesh(devices: list | None = None) -> Mesh:
    """A one-axis mesh (`"batch"`) over `devices`, by default every device of every process."""
    return Mesh(np.asarray(devices if devices is not None else jax.devices()), (BATCH_AXIS,))


@dataclasses.dataclass(frozen=True)
class TrainState:
    """The arrays one step reads and writes, in the order of the Keras variables they mirror.

    Attributes:
        trainable: `model.trainable_variables`.
        non_trainable: `model.non_trainable_variables` (BatchNorm statistics, dropout seeds).
        weights_optimizer: `optimizers.weights.variables` (iterations, slots).
        temperature_optimizer: `optimizers.temperature.variables`.
    """

    trainable: list
    non_trainable: list
    weights_optimizer: list
    temperature_optimizer: list


jax.tree_util.register_dataclass(
    TrainState,
    data_fields=["trainable", "non_trainable", "weights_optimizer", "temperature_optimizer"],
    meta_fields=[],
)


class DataParallelStep:
    """The compiled step of a `DualEncoder` with its `Optimizers`, over a batch-sharded mesh.

    Args:
        model: the dual encoder, built (its variables give the initial state and shapes).
        optimizers: `make_optimizers`' two optimisers, built.
        loss_fn: the contrastive loss.
        mesh: the devices; the global batch must split evenly over them.
    """

    def __init__(self, model: DualEncoder, optimizers: Optimizers, loss_fn: ContrastiveLoss, mesh: Mesh):
        self.model, self.optimizers, self.loss_fn, self.mesh = model, optimizers, loss_fn, mesh
        self.replicated = NamedSharding(mesh, PartitionSpec())
        self.stacked_batch = NamedSharding(mesh, PartitionSpec(None, BATCH_AXIS))
        self.per_device = NamedSharding(mesh, PartitionSpec(BATCH_AXIS))
        trainable = model.trainable_variables
        self._temperature_index = next(i for i, v in enumerate(trainable) if v is model.temperature_parameter)
        self._run = jax.jit(
            self._scan_steps,
            in_shardings=(self.replicated, self.stacked_batch, self.per_device),
            out_shardings=(self.replicated, self.replicated, self.replicated),
            donate_argnums=0,
        )
        self._executables: dict = {}  # compiled `_run` by batch shapes, for multi-process runs
        self._gradients = jax.jit(
            self._loss_and_gradients,
            in_shardings=(self.replicated, NamedSharding(mesh, PartitionSpec(BATCH_AXIS))),
            out_shardings=self.replicated,
        )

    def initial_state(self) -> TrainState:
        """The Keras variables' current values, copied (`run` donates its state) and replicated."""

        groups = self.variable_groups()
        return TrainState(**{name: [self._replicate(v.value) for v in groups[name]] for name in groups})

    def _replicate(self, value) -> jax.Array:
        # From the host copy that every process holds (the same seed built the same model):
        # unlike `jax.device_put`, no program runs to check it against the other processes.
        host = np.array(value)
        return jax.make_array_from_callback(host.shape, self.replicated, lambda index: host[index])

    def variable_groups(self) -> dict[str, list]:
        """The Keras variables that each `TrainState` field mirrors, by field name."""
        return {
            "trainable": self.model.trainable_variables,
            "non_trainable": self.model.non_trainable_variables,
            "weights_optimizer": self.optimizers.weights.variables,
            "temperature_optimizer": self.optimizers.temperature.variables,
        }

    def write_back(self, state: TrainState) -> None:
        """Assigns `state` to the Keras variables (to save, export or log them)."""
        for name, variables in self.variable_groups().items():
            for variable, value in zip(variables, getattr(state, name), strict=True):
                variable.assign(_local_copy(value))

    def temperature(self, state: TrainState) -> float:
        """The softmax temperature that `state` holds."""
        return float(self._temperature(_local_copy(state.trainable[self._temperature_index])))

    def shard(self, batches: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        """Global arrays from this process's share of `k` stacked batches.

        Args:
            batches: `[k, per_process_batch, ...]` arrays; process `p` holds rows
                `p * per_process_batch ...` of each global batch (its devices' shards).

        Returns:
            `[k, global_batch, ...]` arrays sharded along axis 1 over the mesh.
        """
        processes = jax.process_count()
        return {
            key: jax.make_array_from_process_local_data(
                self.stacked_batch, value, (value.shape[0], value.shape[1] * processes, *value.shape[2:])
            )
            for key, value in batches.items()
        }

    def run(
        self, state: TrainState, batches: dict[str, jax.Array], host_values: tuple[int, ...] = (0,)
    ) -> tuple[TrainState, jax.Array, list[list[int]]]:
        """Runs one step per leading index of `batches` (from `shard`).

        Args:
            state: the state (donated: do not reuse it).
            batches: from `shard`.
            host_values: this process's small integers (int32) for every process to see,
                e.g. its input-stream position. The step's own collectives gather them: a
                separate collective would open another communicator, whose setup times out
                when one process reaches it much later than the others (gloo on CPUs: 30 s).

        Returns:
            The new state, each step's global loss `[k]`, and every process's `host_values`
            in process order (read after the step: the call waits for it when several
            processes run).
        """
        local = np.tile(np.asarray(host_values, np.int32), (len(self.mesh.local_devices), 1))
        shape = (self.mesh.size, local.shape[1])
        values = jax.make_array_from_process_local_data(self.per_device, local, shape)
        if jax.process_count() == 1:
            state, losses, gathered = self._run(state, batches, values)
            return state, losses, [list(host_values)]
        state, losses, gathered = self._compiled(state, batches, values)(state, batches, values)
        rows = np.asarray(gathered.addressable_data(0))
        by_process = {
            device.process_index: row.tolist()
            for device, row in zip(self.mesh.devices.flat, rows, strict=True)
        }
        return state, losses, [by_process[p] for p in sorted(by_process)]

    def _compiled(self, state: TrainState, batches: dict[str, jax.Array], values: jax.Array):
        """The step compiled for these shapes, once every process has compiled it.

        Processes compile at different speeds (a loaded host, a cold compilation cache), and
        the first collective of a CPU run sets up gloo, which gives up when one process comes
        30 s after the others: a barrier of the coordination service, with a timeout of its
        own, lines them up after compiling and before running.
        """
        key = tuple((name, batch.shape) for name, batch in sorted(batches.items()))
        if key not in self._executables:
            executable = self._run.lower(state, batches, values).compile()
            barrier = f"alignpipe-step-compiled-{len(self._executables)}"
            distributed.global_state.client.wait_at_barrier(barrier, COMPILE_BARRIER_TIMEOUT_MS)
            self._executables[key] = executable
        return self._executables[key]

    def loss_and_gradients(self, state: TrainState, batch: dict[str, np.ndarray]) -> tuple:
        """The global batch's loss and the gradients of `state.trainable` (for tests)."""
        return self._gradients(state, batch)

    def _temperature(self, theta):
        # `DualEncoder.temperature` of a given parameter value, outside the Keras variable.
        return self.model.temperature_init * ops.exp(self.model.temperature_lr_multiplier * theta)

    def _loss(self, trainable: list, non_trainable: list, batch: dict) -> tuple:
        outputs, non_trainable = self.model.stateless_call(trainable, non_trainable, batch, training=True)
        temperature = self._temperature(trainable[self._temperature_index])
        loss = self.loss_fn(outputs["image_embeddings"], outputs["text_embeddings"], temperature)
        return loss, non_trainable

    def _loss_and_gradients(self, state: TrainState, batch: dict) -> tuple:
        (loss, _), gradients = jax.value_and_grad(self._loss, has_aux=True)(
            state.trainable, state.non_trainable, batch
        )
        return loss, gradients

    def _one_step(self, state: TrainState, batch: dict) -> tuple[TrainState, jax.Array]:
        (loss, non_trainable), gradients = jax.value_and_grad(self._loss, has_aux=True)(
            state.trainable, state.non_trainable, batch
        )
        t = self._temperature_index
        weights = state.trainable[:t] + state.trainable[t + 1 :]
        weights, weights_optimizer = self.optimizers.weights.stateless_apply(
            state.weights_optimizer, gradients[:t] + gradients[t + 1 :], weights
        )
        (theta,), temperature_optimizer = self.optimizers.temperature.stateless_apply(
            state.temperature_optimizer, [gradients[t]], [state.trainable[t]]
        )
        trainable = list(weights[:t]) + [theta] + list(weights[t:])
        return TrainState(trainable, list(non_trainable), weights_optimizer, temperature_optimizer), loss

    def _scan_steps(self, state: TrainState, batches: dict, host_values: jax.Array) -> tuple:
        state, losses = jax.lax.scan(self._one_step, state, batches)
        return state, losses, host_values  # replicated on the way out: all-gathered


def _local_copy(value: jax.Array) -> np.ndarray:
    """A replicated array's value, read from this process's first device (it is on every one)."""
    return np.asarray(value.addressable_data(0))
