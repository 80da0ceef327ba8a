"""What a worker machine offers: CPUs, memory and GPUs.

GPUs are the NVIDIA ones NVML finds, or those `--fake-gpus` declares instead (for
tests and demos; containers see them only through CUDA_VISIBLE_DEVICES).
"""

import os
from dataclasses import dataclass

from ..control.placement import Gpu
from .nvidia import NvidiaGpu, discover

# The GPU types Modal's `gpu=` names, as a worker reports them.
GPU_TYPES = ("T4", "L4", "A10G", "A100-40GB", "A100-80GB", "L40S", "H100", "H200", "B200")


@dataclass(frozen=True)
class Inventory:
    milli_cpu: int
    memory_mb: int
    gpus: tuple[Gpu, ...]
    nvidia: tuple[NvidiaGpu, ...] = ()  # the real ones among them


def parse_fake_gpus(spec: str, machine: str = "") -> tuple[Gpu, ...]:
    """'H100:2,A10G:1' -> three GPUs, indexed in that order; `machine` keeps their ids apart from other workers'."""
    prefix = f"GPU-fake-{machine}-" if machine else "GPU-fake-"
    gpus: list[Gpu] = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        gpu_type, _, count = part.upper().partition(":")
        if gpu_type not in GPU_TYPES:
            raise ValueError(f"Unknown GPU type {gpu_type!r} in {spec!r}; known types: {', '.join(GPU_TYPES)}")
        if count and not count.isdigit():
            raise ValueError(f"GPU count must be a number in {part!r}")
        for _ in range(int(count or 1)):
            gpus.append(Gpu(len(gpus), gpu_type, f"{prefix}{len(gpus)}-{gpu_type}"))
    return tuple(gpus)


def this_machine(fake_gpus: str = "", machine: str = "") -> Inventory:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    cpu = (os.cpu_count() or 1) * 1000
    if fake_gpus:
        return Inventory(cpu, memory, parse_fake_gpus(fake_gpus, machine))
    real = tuple(discover())
    return Inventory(cpu, memory, tuple(Gpu(g.index, g.gpu_type, g.uuid) for g in real), real)
