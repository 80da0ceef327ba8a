"""Where a container runs: feasibility, then ranking, over the workers of the pool.

A request is CPU and memory (explicit requests are reservations; the defaults
reserve nothing) and GPU choices in order of preference. Feasibility checks
drop the workers that cannot take it now; rankers order the rest. A request
no worker could take even when idle is unsatisfiable, and says why.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from modal_proto import api_pb2

from .errors import FailedPrecondition

# What `gpu="A100"` accepts: the client sends the name as written, upper-cased.
GPU_ALIASES = {"A100": ("A100-40GB", "A100-80GB"), "H100!": ("H100",)}


class Unsatisfiable(FailedPrecondition):
    pass


@dataclass(frozen=True)
class GpuChoice:
    gpu_type: str  # "H100", "A100-80GB", "ANY", ...
    count: int

    def accepts(self, gpu_type: str) -> bool:
        return self.gpu_type == "ANY" or gpu_type in GPU_ALIASES.get(self.gpu_type, (self.gpu_type,))

    def __str__(self) -> str:
        return self.gpu_type if self.count == 1 else f"{self.gpu_type}:{self.count}"


@dataclass(frozen=True)
class Request:
    milli_cpu: int = 0
    memory_mb: int = 0
    gpus: tuple[GpuChoice, ...] = ()  # in order of preference; empty: no GPU

    def __str__(self) -> str:
        parts = []
        if self.milli_cpu:
            parts.append(f"cpu={self.milli_cpu / 1000:g}")
        if self.memory_mb:
            parts.append(f"memory={self.memory_mb} MiB")
        if self.gpus:
            parts.append("gpu=" + " or ".join(str(g) for g in self.gpus))
        return ", ".join(parts) or "no resources"


def request_of(definition: api_pb2.Function, gpu_choices: tuple[str, ...] = ()) -> Request:
    """What a function's containers need: its resources, and its GPU fallbacks when it has them."""
    resources = definition.resources
    gpu = resources.gpu_config
    choices = gpu_choices or ((f"{gpu.gpu_type}:{gpu.count or 1}",) if gpu.gpu_type else ())
    gpus = []
    for choice in choices:
        gpu_type, _, count = choice.partition(":")
        gpus.append(GpuChoice(gpu_type.upper(), int(count or 1)))
    return Request(resources.milli_cpu, resources.memory_mb, tuple(gpus))


@dataclass(frozen=True)
class Gpu:
    index: int
    gpu_type: str
    uuid: str


@dataclass
class Allocation:
    worker_id: str
    milli_cpu: int
    memory_mb: int
    gpus: tuple[Gpu, ...] = ()


@dataclass
class Worker:
    worker_id: str
    milli_cpu: int
    memory_mb: int
    gpus: tuple[Gpu, ...] = ()
    images: set[str] = field(default_factory=set)  # images it has run, so it holds their layers
    allocations: dict[str, Allocation] = field(default_factory=dict)  # task id -> what it holds

    def free_cpu(self) -> int:
        return self.milli_cpu - sum(a.milli_cpu for a in self.allocations.values())

    def free_memory(self) -> int:
        return self.memory_mb - sum(a.memory_mb for a in self.allocations.values())

    def free_gpus(self) -> list[Gpu]:
        used = {g.index for a in self.allocations.values() for g in a.gpus}
        return [g for g in self.gpus if g.index not in used]

    def describe(self) -> str:
        counts: dict[str, int] = {}
        for g in self.gpus:
            counts[g.gpu_type] = counts.get(g.gpu_type, 0) + 1
        gpus = ", ".join(f"{t}:{n}" for t, n in sorted(counts.items())) or "no GPUs"
        return f"{self.worker_id} ({self.milli_cpu / 1000:g} CPUs, {self.memory_mb} MiB, {gpus})"


def _gpus_for(choice: GpuChoice, gpus: list[Gpu]) -> tuple[Gpu, ...] | None:
    matching = [g for g in gpus if choice.accepts(g.gpu_type)]
    if len(matching) < choice.count:
        return None
    by_type: dict[str, list[Gpu]] = {}
    for g in matching:
        by_type.setdefault(g.gpu_type, []).append(g)
    # All of one type, from the type with the fewest free: packs, and keeps big groups whole.
    for group in sorted(by_type.values(), key=len):
        if len(group) >= choice.count:
            return tuple(group[: choice.count])
    return None


# -- feasibility: can this worker take the request, with what it has free (or in all)?


def _fits(request: Request, worker: Worker, idle: bool) -> tuple[Gpu, ...] | None:
    """The GPUs it would get (empty when it asks for none), or None when it does not fit."""
    cpu = worker.milli_cpu if idle else worker.free_cpu()
    memory = worker.memory_mb if idle else worker.free_memory()
    if request.milli_cpu > cpu or request.memory_mb > memory:
        return None
    if not request.gpus:
        return ()
    gpus = list(worker.gpus) if idle else worker.free_gpus()
    for choice in request.gpus:
        if (picked := _gpus_for(choice, gpus)) is not None:
            return picked
    return None


# -- ranking: among workers that fit, lower is better.


def _prefers_cached_image(request: Request, worker: Worker, image_id: str) -> int:
    return 0 if image_id in worker.images else 1


def _packs_gpus(request: Request, worker: Worker, image_id: str) -> int:
    # A GPU container goes where the fewest GPUs stay free, so whole machines stay free for big requests.
    return len(worker.free_gpus()) if request.gpus else 0


def _spreads_cpu_work(request: Request, worker: Worker, image_id: str) -> int:
    # CPU-only work goes where most CPU is free, and keeps off GPU machines when it can.
    return 0 if request.gpus else (len(worker.gpus) > 0) * 10**9 - worker.free_cpu()


RANKERS: tuple[Callable[[Request, Worker, str], int], ...] = (
    _prefers_cached_image,
    _packs_gpus,
    _spreads_cpu_work,
)


class Pool:
    def __init__(self) -> None:
        self.workers: dict[str, Worker] = {}

    def add(self, worker: Worker) -> None:
        self.workers[worker.worker_id] = worker

    def place(self, request: Request, task_id: str, image_id: str = "") -> Allocation | None:
        """Reserve what the request needs on the best worker; None when none has room now."""
        candidates = []
        for worker in self.workers.values():
            gpus = _fits(request, worker, idle=False)
            if gpus is not None:
                rank = tuple(r(request, worker, image_id) for r in RANKERS)
                candidates.append((rank, worker.worker_id, worker, gpus))
        if not candidates:
            self.check_satisfiable(request)
            return None
        _, _, worker, gpus = min(candidates, key=lambda c: (c[0], c[1]))
        allocation = Allocation(worker.worker_id, request.milli_cpu, request.memory_mb, gpus)
        worker.allocations[task_id] = allocation
        if image_id:
            worker.images.add(image_id)
        return allocation

    def check_satisfiable(self, request: Request) -> None:
        if not any(_fits(request, w, idle=True) is not None for w in self.workers.values()):
            pool = "; ".join(w.describe() for w in self.workers.values()) or "no workers"
            raise Unsatisfiable(f"No worker can ever run a container with {request}: the pool has {pool}")

    def release(self, task_id: str) -> None:
        for worker in self.workers.values():
            worker.allocations.pop(task_id, None)
