"""The accelerators a Vertex AI training job runs on: `runner.accelerator` x `runner.accelerator_chips`.

Each entry gives what Vertex AI's custom-job `machineSpec` takes for a slice of that many chips
(https://cloud.google.com/vertex-ai/docs/training/configure-compute: machine types, TPU
topologies and VMs per slice), the chip's memory, its peak bfloat16 rate, the trainer image that
runs on it and the training backend and strategy it implies. A TPU slice spans
`chips / chips_per_vm` VMs, one worker replica each (every VM of a multi-host slice runs the
trainer); a GPU slice is one VM with `chips` GPUs.

Example:
    >>> s = slice_of("tpu-v5e", 16)
    >>> s.machine_type, s.tpu_topology, s.hosts
    ('ct5lp-hightpu-4t', '4x4', 4)
"""

from __future__ import annotations

import dataclasses

from alignpipe.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Accelerator:
    """One kind of chip as Vertex AI sells it.

    Attributes:
        kind: cpu, tpu or gpu (which trainer image: `runner.trainer_image`,
            `runner.trainer_tpu_image`, `runner.trainer_gpu_image`).
        machines: chips -> machine type of each VM.
        topologies: chips -> TPU topology (TPUs only).
        chips_per_vm: chips -> chips on each VM of that machine type.
        accelerator_type: Vertex AI's `acceleratorType` (GPUs; TPU machine types imply theirs).
        memory_gb: memory per chip in GB (HBM; a CPU VM's RAM).
        peak_tflops: peak dense bfloat16 TFLOP/s per chip (a CPU VM's float32 peak).
        backend: the training backend (`train.backend`) that runs on it.
        strategy: the `train.strategy` it implies.
    """

    kind: str
    machines: dict[int, str]
    topologies: dict[int, str]
    chips_per_vm: dict[int, int]
    accelerator_type: str
    memory_gb: float
    peak_tflops: float
    backend: str
    strategy: str


def _tpu(machine_1: str, machine_4: str, machine_8: str, shapes: dict[int, str], **figures) -> Accelerator:
    """A TPU v5e / v6e family: 1-, 4- and 8-chip single hosts, then 4-chip hosts in 2D slices."""
    machines = {1: machine_1, 4: machine_4, 8: machine_8} | {n: machine_4 for n in shapes if n > 8}
    per_vm = {1: 1, 4: 4, 8: 8} | {n: 4 for n in shapes if n > 8}
    return Accelerator("tpu", machines, shapes, per_vm, "", backend="jax", strategy="tpu", **figures)


_2D = {1: "1x1", 4: "2x2", 8: "2x4", 16: "4x4", 32: "4x8", 64: "8x8", 128: "8x16", 256: "16x16"}
_V5P = {
    4: "2x2x1",
    8: "2x2x2",
    16: "2x2x4",
    32: "2x4x4",
    64: "4x4x4",
    128: "4x4x8",
    256: "4x8x8",
    512: "8x8x8",
}

ACCELERATORS: dict[str, Accelerator] = {
    # One CPU VM (the CPU trainer image, TensorFlow): small presets; 32 vCPUs, 128 GB.
    "cpu": Accelerator("cpu", {1: "n2-standard-32"}, {}, {1: 1}, "", 128, 1.4, "tensorflow", "default"),
    # TPU v5e: 16 GB HBM2, 197 TFLOP/s bf16 per chip (https://cloud.google.com/tpu/docs/v5e).
    "tpu-v5e": _tpu(
        "ct5lp-hightpu-1t", "ct5lp-hightpu-4t", "ct5lp-hightpu-8t", _2D, memory_gb=16, peak_tflops=197
    ),
    # TPU v6e (Trillium): 32 GB HBM, 918 TFLOP/s bf16 per chip (https://cloud.google.com/tpu/docs/v6e).
    "tpu-v6e": _tpu(
        "ct6e-standard-1t", "ct6e-standard-4t", "ct6e-standard-8t", _2D, memory_gb=32, peak_tflops=918
    ),
    # TPU v5p: 95 GB HBM, 459 TFLOP/s bf16 per chip, 4 chips per VM, 3D slices
    # (https://cloud.google.com/tpu/docs/v5p).
    "tpu-v5p": Accelerator(
        "tpu", dict.fromkeys(_V5P, "ct5p-hightpu-4t"), _V5P, dict.fromkeys(_V5P, 4), "", 95, 459, "jax", "tpu"
    ),
    # NVIDIA A100 40 GB (a2-highgpu-Ng), 312 TFLOP/s bf16.
    "gpu-a100": Accelerator(
        "gpu",
        {n: f"a2-highgpu-{n}g" for n in (1, 2, 4, 8)},
        {},
        {n: n for n in (1, 2, 4, 8)},
        "NVIDIA_TESLA_A100",
        40,
        312,
        "jax",
        "mirrored",
    ),
    # NVIDIA H100 80 GB (a3-highgpu-8g), 989 TFLOP/s dense bf16 (SXM).
    "gpu-h100": Accelerator(
        "gpu", {8: "a3-highgpu-8g"}, {}, {8: 8}, "NVIDIA_H100_80GB", 80, 989, "jax", "mirrored"
    ),
    # NVIDIA L4 24 GB (g2-standard-*), 121 TFLOP/s dense bf16.
    "gpu-l4": Accelerator(
        "gpu",
        {1: "g2-standard-8", 2: "g2-standard-24", 4: "g2-standard-48", 8: "g2-standard-96"},
        {},
        {1: 1, 2: 2, 4: 4, 8: 8},
        "NVIDIA_L4",
        24,
        121,
        "jax",
        "mirrored",
    ),
}


@dataclasses.dataclass(frozen=True)
class Slice:
    """`chips` chips of one accelerator, as one Vertex AI worker pool."""

    accelerator: str
    chips: int
    machine_type: str
    tpu_topology: str
    accelerator_type: str
    accelerator_count: int  # per VM; 0 where the machine type implies it (TPUs, CPUs)
    hosts: int  # VMs, one worker replica each

    @property
    def spec(self) -> Accelerator:
        return ACCELERATORS[self.accelerator]


def slice_of(accelerator: str, chips: int) -> Slice:
    """The worker pool of `chips` chips of `accelerator`.

    Raises:
        ConfigError: an unknown accelerator, or a chip count Vertex AI has no slice of.
    """
    if accelerator not in ACCELERATORS:
        raise ConfigError(
            f"runner.accelerator={accelerator!r} is not allowed; choose one of {list(ACCELERATORS)}"
        )
    spec = ACCELERATORS[accelerator]
    if chips not in spec.machines:
        raise ConfigError(
            f"runner.accelerator_chips={chips!r} is not a slice of {accelerator}; choose one of "
            f"{sorted(spec.machines)}"
        )
    per_vm = spec.chips_per_vm[chips]
    return Slice(
        accelerator=accelerator,
        chips=chips,
        machine_type=spec.machines[chips],
        tpu_topology=spec.topologies.get(chips, ""),
        accelerator_type=spec.accelerator_type,
        accelerator_count=per_vm if spec.accelerator_type else 0,
        hosts=chips // per_vm,
    )


def implied_settings(accelerator: str) -> dict[str, str]:
    """The `train.*` settings an accelerator implies: the backend and strategy that run on it."""
    spec = ACCELERATORS[accelerator]
    return {"train.backend": spec.backend, "train.strategy": spec.strategy}
