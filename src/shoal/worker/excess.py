"""What each container uses above its reservation, second by second.

Modal bills CPU and memory at the greater of the reservation and the actual use. The control
plane meters the reservation for a container's whole life; the worker adds what the container
used beyond it, read from its cgroup at every heartbeat: CPU as the cores it used over the
interval, memory as held at the interval's start (sampled once a second, a brief peak between
readings goes unseen).
"""

from dataclasses import dataclass, field, replace

GIB = 2**30


@dataclass
class Excess:
    cpu_core_seconds: float = 0.0
    memory_gib_seconds: float = 0.0


@dataclass
class _Metered:
    cores: float  # reserved
    gib: float  # reserved
    at: float  # last reading
    cpu_seconds: float = 0.0  # used by then
    memory_gib: float = 0.0  # held then
    excess: Excess = field(default_factory=Excess)


class ExcessMeter:
    def __init__(self) -> None:
        self._containers: dict[str, _Metered] = {}

    def begin(self, task_id: str, cores: float, memory_mb: int, at: float) -> None:
        """A container's process runs from `at`, with this reservation."""
        self._containers[task_id] = _Metered(cores, memory_mb / 1024, at)

    def read(self, task_id: str, cpu_seconds: float | None, memory_bytes: int | None, at: float) -> None:
        """The container's CPU time used so far and the memory it holds now (None: unknown)."""
        metered = self._containers.get(task_id)
        if metered is None:
            return
        elapsed = max(0.0, at - metered.at)
        if cpu_seconds is not None:
            used = max(0.0, cpu_seconds - metered.cpu_seconds)
            metered.excess.cpu_core_seconds += max(0.0, used - metered.cores * elapsed)
            metered.cpu_seconds = cpu_seconds
        metered.excess.memory_gib_seconds += max(0.0, metered.memory_gib - metered.gib) * elapsed
        if memory_bytes is not None:
            metered.memory_gib = memory_bytes / GIB
        metered.at = at

    def end(self, task_id: str, cpu_seconds: float | None, at: float) -> Excess | None:
        """The container exited at `at` having used `cpu_seconds` in all: its final excess, and it
        is metered no more (None if it never was)."""
        if task_id not in self._containers:
            return None
        self.read(task_id, cpu_seconds, None, at)  # its memory is gone with its processes
        return self._containers.pop(task_id).excess

    def totals(self) -> dict[str, Excess]:
        """Every metered container's excess so far."""
        return {task_id: replace(metered.excess) for task_id, metered in self._containers.items()}
