"""Containers per function revision: scale up from the input backlog, down when idle.

The scheduler decides; `launch` and `terminate` (given by the platform) act.
A clustered function's unit is a cluster: its containers start together, take
one share of the function's inputs (clusters.py) and stop together.
Each revision's desired container count is recomputed whenever its backlog
grows and on a steady tick, so scale-to-zero needs no other trigger. A
revision a deploy replaced is retired: it keeps containers only while it has
inputs, so old containers finish what they run and stop. A backlog adds no
containers on a worker whose CPUs the function's own containers keep busy.
"""

import asyncio
import logging
import math
import os
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field

from modal_proto import api_pb2

from .calls import Calls, Running
from .clusters import Cluster
from .functions import Revision
from .ids import new_id
from .placement import Allocation, Unsatisfiable, request_of
from .pulse import Pulse

log = logging.getLogger(__name__)

DEFAULT_SCALEDOWN_WINDOW = 60.0
DEFAULT_MAX_CONTAINERS = 32  # for a function that sets no max_containers
# A container that was told to exit but has not after this long is killed.
DRAIN_GRACE = 30.0
# Containers of one function starting at once: a burst grows the pool step by step
# instead of spending every core on cold starts at the same moment.
MAX_STARTING = max(2, os.cpu_count() or 1)
NO_SCALING = 1e9  # requests per container of a server with target_concurrency=0


@dataclass(frozen=True)
class SandboxLaunch:
    """What a sandbox's container runs: its definition, with the environment its secrets make."""

    sandbox_id: str
    definition: api_pb2.Sandbox
    env: dict[str, str]
    # the keys of cloud bucket mounts given inline (an ephemeral secret), by mount path
    bucket_keys: dict[str, dict[str, str]] = field(default_factory=dict)


@dataclass
class Task:
    task_id: str
    revision_id: str
    function_id: str
    app_id: str
    started_at: float
    allocation: Allocation
    state: str = "starting"  # starting | running | draining | stopped
    idle_since: float = field(default_factory=time.monotonic)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    drain_deadline: float = 0.0
    told_to_exit: bool = False  # a server's container draining was sent SIGTERM
    took_input: bool = False
    ready: bool = False  # it has asked for its first input: imports and @enter are done
    ready_at: float = 0.0  # when (wall clock)
    startup_failure: api_pb2.GenericResult | None = None
    cancelled_inputs: list[str] = field(default_factory=list)
    cancel_pulse: Pulse = field(default_factory=Pulse)
    # why the platform killed it, reported to the inputs it was running
    kill_status: int = 0
    kill_message: str = ""
    ended: asyncio.Event = field(default_factory=asyncio.Event)  # its container exited
    # A sandbox's container (no revision, and no inputs): what it runs, see sandboxes.py
    sandbox: SandboxLaunch | None = None
    cluster: Cluster | None = None  # the cluster it is rank `rank` of (@modal.clustered)
    rank: int = 0


def cluster_size(fdef: api_pb2.Function) -> int:
    """Containers per cluster of a clustered function; 0 for a function of single containers."""
    return fdef._experimental_group_size


def target_concurrency(fdef: api_pb2.Function, settings: "Autoscaling") -> float:
    """Inputs per container the autoscaler provisions for: `@modal.concurrent`'s `target_inputs`,
    else its `max_inputs`. A container takes up to `max_inputs` while inputs queue (`input_slots`).
    A server's are requests in flight: its `target_concurrency` (which may be fractional; 0 turns
    scaling with demand off, so it runs one container when it has any), else its `max_concurrency`,
    else one per container, as a function's inputs."""
    if fdef.is_server and settings.target_concurrency is not None:
        return settings.target_concurrency or NO_SCALING
    return max(1, fdef.target_concurrent_inputs or fdef.max_concurrent_inputs or 1)


@dataclass(frozen=True)
class Autoscaling:
    min_containers: int
    max_containers: int
    buffer_containers: int  # idle containers kept beside the busy ones while the function has work
    scaledown_window: float
    target_concurrency: float | None = None  # a server's requests per container, None when not set


def autoscaling(fdef: api_pb2.Function, override: api_pb2.AutoscalerSettings | None = None) -> Autoscaling:
    """The function's settings: `update_autoscaler` overrides, then the decorator's, then the defaults."""
    declared = fdef.autoscaler_settings

    def setting(name: str, fallback: int) -> int:
        for source in (override, declared):
            if source is not None and source.HasField(name):
                return getattr(source, name)
        return fallback

    return Autoscaling(
        setting("min_containers", fdef.warm_pool_size),
        # 0 is the client's "no bound of the function's own" (`max_containers=None`)
        setting("max_containers", fdef.concurrency_limit) or DEFAULT_MAX_CONTAINERS,
        setting("buffer_containers", fdef._experimental_buffer_containers),
        float(setting("scaledown_window", fdef.task_idle_timeout_secs or int(DEFAULT_SCALEDOWN_WINDOW))),
        next(
            (
                src.target_concurrency_float
                for src in (override, declared)
                if src and src.HasField("target_concurrency_float")
            ),
            None,
        ),
    )


class Scheduler:
    def __init__(
        self,
        calls: Calls,
        load: Callable[[str], Awaitable[Revision]],
        place: Callable[[Revision, list[str], Collection[str]], list[Allocation] | None],
        launch: Callable[[Task], Awaitable[None]],
        terminate: Callable[..., Awaitable[None]],  # (task, graceful=False): SIGTERM when graceful, else kill
        cpu_bound: Callable[[Collection[str]], set[str]] = lambda task_ids: set(),
    ):
        self.calls = calls
        self.load = load
        # reserves room for new containers (each task id's; all or none) on workers but the ones
        # named, None when the pool has no room for them now
        self.place = place
        self.cpu_bound = cpu_bound  # the workers whose CPUs these containers keep busy
        self.launch = launch
        self.terminate = terminate
        self.tasks: dict[str, Task] = {}
        # A server's demand (servers.py): its requests waiting for a container, and those in flight per task id
        self.server_load: Callable[[str], tuple[int, Counter[str]]] = lambda revision_id: (0, Counter())
        self.revisions: dict[str, Revision] = {}  # the ones that may start containers
        self.retired: set[str] = set()
        # Function.update_autoscaler(), per function id, until its app's next deploy
        self.overrides: dict[str, api_pb2.AutoscalerSettings] = {}
        self._floor: dict[str, int] = {}  # containers held ready while a deploy waits for them
        self._failed_starts: Counter[str] = Counter()
        self._dirty: set[str] = set()
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task | None = None

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run())

    async def close(self) -> None:
        if self._loop_task:
            self._loop_task.cancel()

    def kick(self, revision_id: str) -> None:
        self._dirty.add(revision_id)
        self._wake.set()

    def add(self, revision: Revision) -> None:
        """Make a revision schedulable: its inputs may now start containers."""
        self.revisions.setdefault(revision.revision_id, revision)
        self.retired.discard(revision.revision_id)  # a rollback can bring back one still draining
        self.kick(revision.revision_id)

    def retire(self, revision_id: str) -> None:
        """A deploy replaced it: no warm pool, and idle containers stop at once."""
        if revision_id in self.revisions:
            self.retired.add(revision_id)
            self.kick(revision_id)

    async def prewarm(self, revision: Revision, n: int, timeout: float, replacing: Collection[str] = ()) -> None:
        """Start `n` containers of a revision besides the `replacing` ones (task ids), and wait until
        they are ready, or one failed to start."""
        rid = revision.revision_id
        self._failed_starts.pop(rid, None)
        self.add(revision)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline and not self._failed_starts[rid]:
                live = self.live_tasks(rid)
                self._floor[rid] = n + sum(t.task_id in replacing for t in live)  # those may stop meanwhile
                if sum(t.ready for t in live if t.task_id not in replacing) >= n:
                    return
                await asyncio.sleep(0.05)
            log.warning("containers of %s were not ready in time for the switch", rid)
        finally:
            self._floor.pop(rid, None)

    def remove(self, revision_id: str) -> None:
        self.revisions.pop(revision_id, None)
        self._failed_starts.pop(revision_id, None)
        self.retired.discard(revision_id)

    def live_tasks(self, revision_id: str) -> list[Task]:
        return [t for t in self.tasks.values() if t.revision_id == revision_id and t.state in ("starting", "running")]

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), 1.0)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            dirty, self._dirty = self._dirty, set()
            running = defaultdict(list)  # revision id -> its running inputs, gathered once per pass
            for r in self.calls.running.values():
                running[r.input.revision_id].append(r)
            for revision_id in self._fair_order(
                dirty | {t.revision_id for t in self.tasks.values() if not t.sandbox} | self._with_backlog()
            ):
                try:
                    await self.reconcile(revision_id, running[revision_id])
                except Exception:
                    log.exception("reconcile of %s failed", revision_id)

    def _fair_order(self, revision_ids: set[str]) -> list[str]:
        """When the pool is full, freed room goes first to the app running the fewest containers."""
        per_app = Counter(t.app_id for t in self.tasks.values())

        def app_load(rid: str) -> int:
            revision = self.revisions.get(rid)
            return per_app[revision.app_id] if revision else 0

        return sorted(revision_ids, key=app_load)

    def _with_backlog(self) -> set[str]:
        return {rid for rid, q in self.calls.queues.items() if q.pending}

    async def reconcile(self, revision_id: str, running: list[Running]) -> None:
        revision = self.revisions.get(revision_id)
        if revision is None:
            if not self.calls.queue(revision_id).pending:
                return
            # Inputs no registered revision owns: retries of calls a deploy has since replaced.
            revision = self.revisions[revision_id] = await self.load(revision_id)
            self.retired.add(revision_id)
        fdef = revision.definition
        settings = autoscaling(fdef, self.overrides.get(revision.function_id))
        retired = revision_id in self.retired
        live = self.live_tasks(revision_id)
        # Counted in units: containers, or a clustered function's clusters (by their leads,
        # which take the inputs); the container settings count containers.
        size = max(1, cluster_size(fdef))
        units = [t for t in live if t.rank == 0]
        per_task = target_concurrency(fdef, settings)
        if fdef.is_server:
            backlog, active = self.server_load(revision_id)
        else:
            backlog, active = len(self.calls.queue(revision_id).pending), Counter(r.task_id for r in running)
        in_flight = sum(active.values())
        idle_slots = sum(max(0, per_task - active[t.task_id]) for t in units)
        wanted = len(units)
        if backlog > idle_slots:
            wanted += math.ceil((backlog - idle_slots) / per_task)
        warm = 0 if retired else math.ceil(max(settings.min_containers, self._floor.get(revision_id, 0)) / size)
        floor = warm
        if (in_flight or backlog) and not retired:
            busy = math.ceil((in_flight + backlog) / per_task)
            warm = max(warm, busy + settings.buffer_containers // size)
        wanted = max(wanted, warm)
        wanted = min(wanted, max(1, settings.max_containers // size))
        starting = sum(1 for t in units if t.state == "starting")
        # From zero, the first container starts alone: a caller waits on it, and it starts
        # faster with the machine to itself; the rest follow once it runs.
        limit = MAX_STARTING if len(units) > starting else 1
        to_start = min(wanted - len(units), limit - starting)
        avoid = self._cpu_bound_workers(revision, live) if to_start > 0 and len(units) >= floor else set()
        for _ in range(to_start):
            task_ids = [new_id("ta") for _ in range(size)]
            try:
                allocations = self.place(revision, task_ids, avoid)
            except Unsatisfiable as e:
                failed = api_pb2.GenericResult(status=api_pb2.GenericResult.GENERIC_STATUS_FAILURE, exception=str(e))
                await self.calls.fail_queued(revision_id, failed)
                break
            if allocations is None:
                if not avoid:
                    await self._reclaim_idle(revision, size)
                break  # no room in the pool now: the inputs wait in the queue
            tasks = [
                Task(task_id, revision_id, revision.function_id, revision.app_id, time.time(), allocation, rank=rank)
                for rank, (task_id, allocation) in enumerate(zip(task_ids, allocations, strict=True))
            ]
            cluster = Cluster(new_id("cu"), revision.app_id, tasks) if cluster_size(fdef) else None
            for task in tasks:
                task.cluster = cluster
                self.tasks[task.task_id] = task
                await self.launch(task)

        await self._enforce_timeout(fdef, running)
        await self._enforce_startup_timeout(fdef, live)
        now = time.monotonic()
        window = 0.0 if retired else settings.scaledown_window
        surplus = len(units) - warm
        for task in units:
            if active[task.task_id]:
                task.idle_since = now
            elif surplus > 0 and backlog == 0 and now - task.idle_since >= window:
                surplus -= 1
                await self.drain(task)
        revision_tasks = [t for t in self.tasks.values() if t.revision_id == revision_id]
        for task in revision_tasks:
            if task.state != "draining":
                continue
            # A server's container asks for no input to be told to exit: once its requests are done, or
            # its exit_grace_period is over, it gets SIGTERM (as in Modal), then DRAIN_GRACE to exit.
            if fdef.is_server and not task.told_to_exit and (not active[task.task_id] or now > task.drain_deadline):
                task.told_to_exit, task.drain_deadline = True, now + DRAIN_GRACE
                await self.terminate(task, graceful=True)
            elif now > task.drain_deadline:
                await self.terminate(task)
        if retired and not revision_tasks and not backlog:
            self.remove(revision_id)

    def _cpu_bound_workers(self, revision: Revision, live: list[Task]) -> set[str]:
        """Past its floor, a function gets no more containers where its ready ones keep the CPUs
        busy: they would share the same cores, and spend them on cold starts first. GPUs are
        what a GPU function waits for, so a free one is never left idle for the CPUs' sake."""
        if request_of(revision.definition, revision.gpu_choices).gpus:
            return set()
        return self.cpu_bound([t.task_id for t in live if t.ready])

    async def _reclaim_idle(self, waiting: Revision, wanted: int = 1) -> None:
        """The pool is full and `waiting` has inputs: idle containers of other functions that hold
        what it needs (GPUs of a type it accepts, or reserved CPU or memory) stop now rather than
        at the end of their scaledown window, as many as it waits for (a cluster's size). Idle
        means ready and without work: a container still in its imports and @enter, or one whose
        function has inputs queued (it is between two of them), is about to serve, and stopping
        it costs a cold start. Another function's cluster stops whole."""
        request = request_of(waiting.definition, waiting.gpu_choices)

        def useful(held: Allocation) -> bool:
            if request.gpus:
                return any(choice.accepts(g.gpu_type) for g in held.gpus for choice in request.gpus)
            return held.milli_cpu > 0 or held.memory_mb > 0

        others = [
            t
            for t in self.tasks.values()
            if t.revision_id != waiting.revision_id and t.rank == 0 and useful(t.allocation)
        ]
        wanted -= sum(len(members(t)) for t in others if t.state == "draining")  # room already on its way
        busy = {r.task_id for r in self.calls.running.values()}
        for task in sorted(others, key=lambda t: t.idle_since):
            if wanted <= 0:
                return
            revision = self.revisions.get(task.revision_id)
            if task.state != "running" or not task.ready or task.task_id in busy or revision is None:
                continue
            if self.calls.queue(task.revision_id).pending:
                continue
            warm = autoscaling(revision.definition, self.overrides.get(revision.function_id)).min_containers
            units = [t for t in self.live_tasks(task.revision_id) if t.rank == 0]  # less those drained here
            if len(units) > math.ceil(warm / max(1, cluster_size(revision.definition))):
                wanted -= len(members(task))
                await self.drain(task)

    async def _enforce_startup_timeout(self, fdef: api_pb2.Function, live: list[Task]) -> None:
        """A container not ready (imports and @enter done) within startup_timeout is stopped, and the
        inputs waiting for it fail with the reason rather than wait for another that would be as slow."""
        limit = fdef.startup_timeout_secs
        if not limit:
            return
        for task in live:
            if not task.ready and task.startup_failure is None and time.time() - task.started_at > limit:
                task.startup_failure = api_pb2.GenericResult(
                    status=api_pb2.GenericResult.GENERIC_STATUS_TIMEOUT,
                    exception=f"The container did not start within {limit} seconds (startup_timeout)",
                )
                await self.terminate(task)

    async def _enforce_timeout(self, fdef: api_pb2.Function, running: list[Running]) -> None:
        if not fdef.timeout_secs:
            return
        now = time.time()
        for r in running:
            task = self.tasks.get(r.task_id)
            if task is None or task.kill_status:
                continue
            if now - r.started_at > fdef.timeout_secs:
                await self.kill(
                    task,
                    api_pb2.GenericResult.GENERIC_STATUS_TIMEOUT,
                    f"Function '{fdef.function_name}' timed out after {fdef.timeout_secs} seconds",
                )

    async def kill(self, task: Task, status: int, message: str) -> None:
        """Stop a container (with its cluster) now; its running inputs fail with `status` and `message`."""
        # the other containers of its cluster, but those stopping for a reason of their own
        doomed = [m for m in members(task) if m is task or not m.kill_status]
        for member in doomed:
            member.kill_status, member.kill_message = status, message
            member.state = "draining"
            member.stop.set()
        for member in doomed:
            await self.terminate(member)

    async def drain(self, task: Task) -> None:
        """Ask a container (with its cluster) to finish: its next input request is answered with exit."""
        for member in members(task):
            if member.state in ("draining", "stopped"):
                continue
            member.state = "draining"
            revision = self.revisions.get(member.revision_id)
            server = revision is not None and revision.definition.is_server
            grace = revision.definition.http_config.exit_grace_period if server else DRAIN_GRACE
            member.drain_deadline = time.monotonic() + grace
            member.stop.set()
            if member.cluster:
                member.cluster.pulse.notify()
        self.calls.queue(task.revision_id).notify()

    async def break_cluster(self, task: Task, code: int) -> None:
        """One of a cluster's containers ended: the others stop too, unless they are finishing already."""
        if task.cluster is None or task.cluster.broken.is_set():
            return
        task.cluster.broken.set()
        task.cluster.pulse.notify()
        going_on = [m for m in members(task) if m.state not in ("draining", "stopped")]
        if going_on:
            await self.kill(
                going_on[0],
                api_pb2.GenericResult.GENERIC_STATUS_INTERNAL_FAILURE,
                f"Container {task.task_id} (rank {task.rank} of cluster {task.cluster.cluster_id}) "
                f"exited with code {code}",
            )

    def mark_running(self, task_id: str) -> None:
        task = self.tasks.get(task_id)
        if task and task.state == "starting":
            task.state = "running"
            task.idle_since = time.monotonic()

    def exited(self, task_id: str) -> None:
        task = self.tasks.pop(task_id, None)
        if task:
            if not task.ready and task.state != "draining" and not task.sandbox:
                self._failed_starts[task.revision_id] += 1
            task.state = "stopped"
            task.stop.set()
            task.ended.set()
            if not task.sandbox:
                self.kick(task.revision_id)

    def input_slots(self, revision_id: str, target: int, maximum: int) -> int:
        """How many inputs a container of a function with `target_inputs` below `max_inputs`
        takes at once (it asks every few seconds): up to the maximum while the function has
        inputs waiting, which new containers may not absorb soon enough, else the target."""
        return maximum if self.calls.queue(revision_id).pending else target

    def current_stats(self, revision: Revision) -> api_pb2.FunctionStats:
        """Function.get_current_stats(): inputs waiting and running, containers, and the inputs
        the function's ready containers could still take."""
        rid = revision.revision_id
        live = self.live_tasks(rid)
        running = Counter(r.task_id for r in self.calls.running.values() if r.input.revision_id == rid)
        per_task = max(1, revision.definition.max_concurrent_inputs or 1)
        return api_pb2.FunctionStats(
            backlog=len(self.calls.queue(rid).pending),
            num_total_tasks=len(live),
            num_running_inputs=sum(running.values()),
            input_headroom=sum(
                max(0, per_task - running[t.task_id]) for t in live if t.state == "running" and t.rank == 0
            ),
        )

    def tasks_of_app(self, app_id: str) -> list[Task]:
        """Its containers, its sandboxes' included."""
        return [t for t in self.tasks.values() if t.app_id == app_id]


def members(task: Task) -> list[Task]:
    """The containers of its cluster still known to the scheduler, itself included; itself alone
    when it is in none."""
    if task.cluster is None:
        return [task]
    return [t for t in task.cluster.members if t.state != "stopped"] or [task]
