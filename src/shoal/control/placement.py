"""Where a container runs: feasibility, then ranking, over the workers of the pool.

A request is CPU and memory (explicit requests are reservations; the defaults
reserve nothing) and GPU choices in order of preference. Feasibility checks
drop the workers that cannot take it now; rankers order the rest. A request
no worker could take even when idle is unsatisfiable, and says why. Workers
also report how busy their CPUs are, and with which containers (`cpu_bound`).
"""

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from modal_proto import api_pb2

from .errors import FailedPrecondition

# A worker counts as CPU-bound for a function when its CPUs are this busy and the function's
# containers use this share of its cores.
CPU_BUSY = 0.9
CPU_BOUND_SHARE = 0.3

# What `gpu="A100"` accepts: the client sends the name as written, upper-cased.
GPU_ALIASES = {"A100": ("A100-40GB", "A100-80GB"), "H100!": ("H100",)}


class Unsatisfiable(FailedPrecondition):
    pass


@dataclass(frozen=True)
class GpuChoice:
    gpu_type: str  # "H100", "A100-80GB", "ANY", ...
    count: int

    def types(self) -> tuple[str, ...] | None:
        """The GPU types it accepts; None for any."""
        return None if self.gpu_type == "ANY" else GPU_ALIASES.get(self.gpu_type, (self.gpu_type,))

    def accepts(self, gpu_type: str) -> bool:
        types = self.types()
        return types is None or gpu_type in types

    def __str__(self) -> str:
        return self.gpu_type if self.count == 1 else f"{self.gpu_type}:{self.count}"


@dataclass(frozen=True)
class Request:
    milli_cpu: int = 0
    memory_mb: int = 0
    gpus: tuple[GpuChoice, ...] = ()  # in order of preference; empty: no GPU
    volumes: bool = False  # it mounts volumes, which only some workers see

    def __str__(self) -> str:
        parts = []
        if self.milli_cpu:
            parts.append(f"cpu={self.milli_cpu / 1000:g}")
        if self.memory_mb:
            parts.append(f"memory={self.memory_mb} MiB")
        if self.gpus:
            parts.append("gpu=" + " or ".join(str(g) for g in self.gpus))
        if self.volumes:
            parts.append("volumes (only the control plane's own worker and workers joined with --volumes mount them)")
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
    return Request(resources.milli_cpu, resources.memory_mb, tuple(gpus), bool(definition.volume_mounts))


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
    volumes: bool = False  # it can mount volumes: the embedded worker, or one joined with --volumes
    # what it last reported: its CPUs' busy fraction and the cores each of its containers used
    cpu_busy: float = 0.0
    task_cores: dict[str, float] = field(default_factory=dict)
    allocations: dict[str, Allocation] = field(default_factory=dict)  # task id -> what it holds
    # kept as allocations come and go, so a placement reads them instead of summing
    free_cpu: int = field(init=False)
    free_memory: int = field(init=False)
    free_gpus: dict[str, list[Gpu]] = field(init=False)  # by type
    all_gpus: dict[str, list[Gpu]] = field(init=False)

    def __post_init__(self) -> None:
        self.free_cpu, self.free_memory = self.milli_cpu, self.memory_mb
        self.all_gpus = {}
        for g in self.gpus:
            self.all_gpus.setdefault(g.gpu_type, []).append(g)
        self.free_gpus = {t: list(gs) for t, gs in self.all_gpus.items()}

    def free_gpu_count(self) -> int:
        return sum(len(gs) for gs in self.free_gpus.values())

    def hold(self, task_id: str, allocation: Allocation) -> None:
        self.allocations[task_id] = allocation
        self.free_cpu -= allocation.milli_cpu
        self.free_memory -= allocation.memory_mb
        for g in allocation.gpus:
            self.free_gpus[g.gpu_type].remove(g)

    def release(self, task_id: str) -> None:
        allocation = self.allocations.pop(task_id, None)
        if allocation is not None:
            self.free_cpu += allocation.milli_cpu
            self.free_memory += allocation.memory_mb
            for g in allocation.gpus:
                self.free_gpus[g.gpu_type] = sorted([*self.free_gpus[g.gpu_type], g], key=lambda x: x.index)

    def shape(self) -> str:
        counts: dict[str, int] = {}
        for g in self.gpus:
            counts[g.gpu_type] = counts.get(g.gpu_type, 0) + 1
        gpus = ", ".join(f"{t}:{n}" for t, n in sorted(counts.items())) or "no GPUs"
        return f"{self.milli_cpu / 1000:g} CPUs, {self.memory_mb} MiB, {gpus}" + ", volumes" * self.volumes


def _gpus_for(choice: GpuChoice, by_type: dict[str, list[Gpu]]) -> tuple[Gpu, ...] | None:
    types = choice.types()
    groups = [gs for t, gs in by_type.items() if (types is None or t in types) and len(gs) >= choice.count]
    if not groups:
        return None
    # All of one type, from the type with the fewest free: packs, and keeps big groups whole.
    return tuple(min(groups, key=len)[: choice.count])


# -- feasibility: can this worker take the request, with what it has free (or in all)?


def _fits(request: Request, worker: Worker, idle: bool) -> tuple[Gpu, ...] | None:
    """The GPUs it would get (empty when it asks for none), or None when it does not fit."""
    if request.volumes and not worker.volumes:
        return None
    cpu = worker.milli_cpu if idle else worker.free_cpu
    memory = worker.memory_mb if idle else worker.free_memory
    if request.milli_cpu > cpu or request.memory_mb > memory:
        return None
    if not request.gpus:
        return ()
    gpus = worker.all_gpus if idle else worker.free_gpus
    for choice in request.gpus:
        if (picked := _gpus_for(choice, gpus)) is not None:
            return picked
    return None


# -- ranking: among workers that fit, lower is better.


def _prefers_cached_image(request: Request, worker: Worker, image_id: str) -> int:
    return 0 if image_id in worker.images else 1


def _packs_gpus(request: Request, worker: Worker, image_id: str) -> int:
    # A GPU container goes where the fewest GPUs stay free, so whole machines stay free for big requests.
    return worker.free_gpu_count() if request.gpus else 0


def _spreads_cpu_work(request: Request, worker: Worker, image_id: str) -> int:
    # CPU-only work goes where most CPU is free, and keeps off GPU machines when it can.
    return 0 if request.gpus else (len(worker.gpus) > 0) * 10**9 - worker.free_cpu


RANKERS: tuple[Callable[[Request, Worker, str], int], ...] = (
    _prefers_cached_image,
    _packs_gpus,
    _spreads_cpu_work,
)


# After a worker leaves, a request only it could run waits this long for one to join before it
# fails as unsatisfiable: a restarted worker, or a control plane's workers after its own restart.
REJOIN_GRACE = 30.0


class Pool:
    def __init__(self) -> None:
        self.workers: dict[str, Worker] = {}
        self.rejoin_deadline = 0.0  # time.monotonic() until which unsatisfiable requests wait
        self._placed: dict[str, str] = {}  # task id -> worker id
        self._with_gpu: dict[str, list[Worker]] = {}  # GPU type -> the workers that have it

    def add(self, worker: Worker) -> None:
        self.workers[worker.worker_id] = worker
        for gpu_type in worker.all_gpus:
            self._with_gpu.setdefault(gpu_type, []).append(worker)

    def expect_workers(self) -> None:
        self.rejoin_deadline = time.monotonic() + REJOIN_GRACE

    def remove(self, worker_id: str) -> None:
        worker = self.workers.pop(worker_id, None)
        if worker is None:
            return
        self.expect_workers()
        for gpu_type in worker.all_gpus:
            self._with_gpu[gpu_type] = [w for w in self._with_gpu[gpu_type] if w is not worker]
        for task_id in worker.allocations:
            self._placed.pop(task_id, None)

    def _candidates(self, request: Request) -> list[Worker]:
        """The workers worth checking: for a GPU request, those with a type it accepts."""
        if not request.gpus:
            return list(self.workers.values())
        types: set[str] = set()
        for choice in request.gpus:
            types.update(choice.types() or self._with_gpu)
        return list({w.worker_id: w for t in types for w in self._with_gpu.get(t, ())}.values())

    def cpu_bound(self, task_ids: Collection[str]) -> set[str]:
        """The workers whose CPUs are busy, a good share of them with these containers (a function's
        ready ones): another container of theirs there would only share the same cores."""
        return {
            w.worker_id
            for w in self.workers.values()
            if w.cpu_busy >= CPU_BUSY
            and sum(w.task_cores.get(t, 0.0) for t in task_ids) >= CPU_BOUND_SHARE * w.milli_cpu / 1000
        }

    def place(
        self, request: Request, task_id: str, image_id: str = "", avoid: Collection[str] = ()
    ) -> Allocation | None:
        """Reserve what the request needs on the best worker but those in avoid; None when none has room now."""
        feasible = []
        for worker in self._candidates(request):
            gpus = _fits(request, worker, idle=False)
            if gpus is not None:
                feasible.append((worker, gpus))
        if not feasible:
            if time.monotonic() >= self.rejoin_deadline:
                self.check_satisfiable(request)
            return None
        feasible = [f for f in feasible if f[0].worker_id not in avoid]
        if not feasible:
            return None
        # Each ranker keeps the workers it scores best; the next one only breaks their tie.
        for ranker in RANKERS:
            if len(feasible) == 1:
                break
            scores = [ranker(request, worker, image_id) for worker, _ in feasible]
            best = min(scores)
            feasible = [f for f, score in zip(feasible, scores, strict=True) if score == best]
        worker, gpus = min(feasible, key=lambda f: f[0].worker_id)
        allocation = Allocation(worker.worker_id, request.milli_cpu, request.memory_mb, gpus)
        worker.hold(task_id, allocation)
        self._placed[task_id] = worker.worker_id
        if image_id:
            worker.images.add(image_id)
        return allocation

    def place_all(
        self, request: Request, task_ids: list[str], image_id: str = "", avoid: Collection[str] = ()
    ) -> list[Allocation] | None:
        """Room for each of a cluster's containers, all at once or none (gang placement); None
        when the pool has no room for all of them now."""
        placed: list[Allocation] = []
        try:
            for task_id in task_ids:
                if (allocation := self.place(request, task_id, image_id, avoid)) is None:
                    if time.monotonic() >= self.rejoin_deadline:
                        self.check_satisfiable(request, len(task_ids))
                    return None
                placed.append(allocation)
            return placed
        finally:
            if len(placed) < len(task_ids):
                for task_id in task_ids[: len(placed)]:
                    self.release(task_id)

    def check_satisfiable(self, request: Request, count: int = 1) -> None:
        """Raise Unsatisfiable when the pool, idle, could not hold `count` containers of the request."""
        room = 0
        for w in self.workers.values():
            idle = Worker(w.worker_id, w.milli_cpu, w.memory_mb, w.gpus, volumes=w.volumes)
            while room < count and (gpus := _fits(request, idle, idle=False)) is not None:
                idle.hold(f"would-be {room}", Allocation(w.worker_id, request.milli_cpu, request.memory_mb, gpus))
                room += 1
                if not (request.milli_cpu or request.memory_mb or request.gpus):
                    room = count  # it reserves nothing: any worker holds them all
        if room < count:
            shapes: dict[str, int] = {}
            for worker in self.workers.values():
                shapes[worker.shape()] = shapes.get(worker.shape(), 0) + 1
            pool = "; ".join(f"{n} worker{'s' * (n > 1)} with {shape}" for shape, n in shapes.items()) or "no workers"
            what = "a container" if count == 1 else f"a cluster of {count} containers, each"
            raise Unsatisfiable(f"No worker can ever run {what} with {request}: the pool has {pool}")

    def release(self, task_id: str) -> None:
        worker_id = self._placed.pop(task_id, None)
        if worker_id in self.workers:
            self.workers[worker_id].release(task_id)
