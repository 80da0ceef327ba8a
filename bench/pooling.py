"""Pooling: three bursty apps share one worker with 4 GPUs, simulated on a virtual clock.

Each app alternates bursts (mean 40 s) and quiet spells (mean 80 s), both exponential. In
a burst its one-GPU inputs arrive at random (Poisson) at a rate that would keep
`--burst-load` GPUs busy; each runs a log-normal time (median 4 s, at most 60 s). A new
container takes `--cold-start` seconds (uniform) from placement to its first input
request, and one told to stop takes `--exit` seconds to free its GPU. Every function has
concurrency 1 and a `--scaledown` window, 60 s by default (Modal's default too).
With the default burst load of 2, each app alone would keep 2/3 of a GPU busy on average,
and the three together half the pool.

What runs is shoal's own code: the Scheduler (its loop, `_fair_order`, `reconcile`,
`_reclaim_idle`, the scaledown window), Calls (the queues, `next_inputs`, `put_output`) and
the placement Pool, on an asyncio loop whose clock is virtual: where the loop would sleep,
the clock jumps to its next timer. Only the store (a no-op) and the containers (coroutines
doing what the servicer does for a container's RPCs) stand in. Seeded, so deterministic.

    python bench/pooling.py [--hours 4] [--seed 1] [--burst-load 2] [--cold-start 2-5] [--exit 0.5] [--scaledown 60]
"""

import argparse
import asyncio
import contextlib
import heapq
import math
import os
import random
import selectors
import sys
from collections import Counter
from types import SimpleNamespace

from modal_proto import api_pb2

from shoal.control import calls as calls_module
from shoal.control import scheduler as scheduler_module
from shoal.control.calls import SYNC_INVOCATIONS, Calls
from shoal.control.functions import Revision
from shoal.control.placement import Gpu, Pool, Worker, request_of
from shoal.control.scheduler import Scheduler, Task

GPUS = 4
APPS = 3
BURST_S, QUIET_S = 40.0, 80.0  # means of the exponential on / off spells
RUN_MEDIAN_S, RUN_SIGMA, RUN_MAX_S = 4.0, 0.8, 60.0  # log-normal input run times
HELLO_S = 0.5  # of the cold start, until ContainerHello (runc and the Python runtime up)
INPUTS_POLL = 5.0  # as the servicer's FunctionGetInputs long-poll

# A 4-GPU server has far more than 4 cores, so MAX_STARTING (the host's core count) never
# binds there; pinned so the result does not depend on the machine running the simulation.
scheduler_module.MAX_STARTING = 16


class VirtualClock(selectors.DefaultSelector):
    """A selector that never blocks: where the loop would wait `timeout`, the clock moves on."""

    now = 0.0

    def select(self, timeout=None):
        ready = super().select(0)
        if not ready and timeout:
            self.now += timeout
        return ready


class VirtualLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self.clock = VirtualClock()
        super().__init__(self.clock)

    def time(self) -> float:
        return self.clock.now


def clock() -> float:
    return asyncio.get_running_loop().time()


# The scheduler and the call queues read wall time for windows and timestamps: give them the virtual clock.
scheduler_module.time = calls_module.time = SimpleNamespace(monotonic=clock, time=clock)


class NoStore:
    """Calls writes inputs and outputs to the store; the store is not what is measured here."""

    @contextlib.asynccontextmanager
    async def tx(self):
        yield self

    async def execute(self, *statement) -> None:
        pass


def trace(hours: float, burst_load: float, rng: random.Random) -> list[tuple[float, int, float]]:
    """(arrival time, app, run time) of every input, in time order."""
    inputs = []
    rate = burst_load / (RUN_MEDIAN_S * math.exp(RUN_SIGMA**2 / 2))  # GPUs busy / mean run time
    for app in range(APPS):
        t = rng.expovariate(1 / QUIET_S)
        while t < hours * 3600:
            end = t + rng.expovariate(1 / BURST_S)
            while (t := t + rng.expovariate(rate)) < end:
                inputs.append((t, app, min(RUN_MAX_S, rng.lognormvariate(0, RUN_SIGMA) * RUN_MEDIAN_S)))
            t = end + rng.expovariate(1 / QUIET_S)
    return sorted(inputs)


def warm_pool_delays(arrivals: list[tuple[float, int, float]]) -> list[float]:
    """The same inputs on GPUS always-warm GPUs, first come first served: the queueing the trace
    itself causes, with no cold start and no GPU held by an idle container."""
    free_at = [0.0] * GPUS
    delays = []
    for at, _, seconds in arrivals:
        start = max(at, heapq.heappop(free_at))
        delays.append(start - at)
        heapq.heappush(free_at, start + seconds)
    return delays


class Meter:
    """GPU-seconds held busy (by containers cold-starting or running an input) against the pool's,
    over the time some input waits, and over the time some input waits for a GPU (its function has
    more queued than its live containers have free slots, so no container is on its way to it)."""

    def __init__(self, scheduler: Scheduler, calls: Calls) -> None:
        self.scheduler, self.calls = scheduler, calls
        self.last = 0.0
        self.state = (False, False, 0, 0)  # some input waits, one waits for a GPU, busy GPUs, running GPUs
        self.total: Counter[str] = Counter()

    def update(self) -> None:
        """Called after every change: the interval since the last call had the state then measured."""
        dt, self.last = clock() - self.last, clock()
        waiting, for_gpu, busy, running = self.state
        if waiting:
            self.total["waiting s"] += dt
            self.total["busy GPU-s"] += dt * busy
            self.total["running GPU-s"] += dt * running
        if for_gpu:
            self.total["waiting for a GPU s"] += dt
            self.total["busy GPU-s while waiting for a GPU"] += dt * busy
        serving = {r.task_id for r in self.calls.running.values()}
        tasks = self.scheduler.tasks.values()
        starting = sum(len(t.allocation.gpus) for t in tasks if not t.ready and t.state != "draining")
        running = sum(len(t.allocation.gpus) for t in tasks if t.task_id in serving)
        for_gpu = any(
            len(q.pending) > sum(t.task_id not in serving for t in self.scheduler.live_tasks(rid))
            for rid, q in self.calls.queues.items()
        )
        waiting = any(q.pending for q in self.calls.queues.values())
        self.state = (waiting, for_gpu, starting + running, running)


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


async def simulate(
    hours: float, seed: int, burst_load: float, cold_start: tuple[float, float], exit_s: float, scaledown_s: int
) -> dict:
    rng = random.Random(seed)
    arrivals = trace(hours, burst_load, rng)
    pool = Pool()
    pool.add(Worker("w0", 32000, 262144, tuple(Gpu(i, "H100", f"GPU-{i}") for i in range(GPUS))))
    calls = Calls(NoStore(), lambda revision_id: api_pb2.FunctionRetryPolicy())
    gpu = api_pb2.Resources(gpu_config=api_pb2.GPUConfig(gpu_type="H100", count=1))
    revisions = [
        Revision(
            f"rv-{app}",
            f"fu-{app}",
            f"ap-{app}",
            api_pb2.Function(function_name=f"f{app}", resources=gpu, task_idle_timeout_secs=scaledown_s),
        )
        for app in range(APPS)
    ]
    containers: dict[str, asyncio.Task] = {}
    enqueued: dict[str, tuple[int, float, float]] = {}  # input id -> app, enqueued at, run time
    delays: list[list[float]] = [[] for _ in range(APPS)]
    counts: Counter[str] = Counter()

    def place(revision: Revision, task_id: str, avoid):
        # as Lifecycle.place (the simulation reports no CPU load, so avoid is always empty)
        request = request_of(revision.definition, revision.gpu_choices)
        return pool.place(request, task_id, revision.definition.image_id, avoid)

    async def launch(task: Task) -> None:
        task.idle_since = clock()  # Task's default reads the wall clock
        counts["containers"] += 1
        counts["from zero"] += len(scheduler.live_tasks(task.revision_id)) == 1  # only this one
        containers[task.task_id] = asyncio.create_task(container(task, rng.uniform(*cold_start)))
        meter.update()

    async def terminate(task: Task) -> None:
        containers[task.task_id].cancel()

    async def container(task: Task, cold_start: float) -> None:
        """A container's life as the servicer sees it: ContainerHello, FunctionGetInputs, FunctionPutOutputs."""
        try:
            await asyncio.sleep(HELLO_S)
            scheduler.mark_running(task.task_id)
            await asyncio.sleep(cold_start - HELLO_S)  # imports and @enter
            while True:
                task.ready = True
                meter.update()
                if task.stop.is_set():
                    break
                taken = await calls.next_inputs(task.revision_id, task.task_id, 1, INPUTS_POLL, task.stop)
                if not taken:
                    continue
                counts["first inputs"] += not task.took_input  # their wait included the container's cold start
                task.took_input = True
                app, at, seconds = enqueued[taken[0].input_id]
                delays[app].append(clock() - at)
                meter.update()
                await asyncio.sleep(seconds)
                await calls.put_output(taken[0].input_id, api_pb2.GenericResult(status=1), 0)
                task.idle_since = clock()  # as FunctionPutOutputs: the window counts from the last output
            await asyncio.sleep(exit_s)  # the worker sees it exit
        finally:
            # as Lifecycle._container_exited
            pool.release(task.task_id)
            scheduler.exited(task.task_id)
            containers.pop(task.task_id)
            meter.update()

    async def load(revision_id: str) -> Revision:
        raise AssertionError("every revision is added up front")

    scheduler = Scheduler(calls, load, place, launch, terminate)
    reclaim_idle = scheduler._reclaim_idle

    async def reclaim_counted(waiting: Revision) -> None:
        draining = sum(t.state == "draining" for t in scheduler.tasks.values())
        await reclaim_idle(waiting)
        counts["reclaimed"] += sum(t.state == "draining" for t in scheduler.tasks.values()) - draining

    scheduler._reclaim_idle = reclaim_counted  # counted, not changed
    calls.on_backlog = scheduler.kick  # as Platform.__init__
    meter = Meter(scheduler, calls)
    for revision in revisions:
        scheduler.add(revision)
    scheduler.start()
    for at, app, seconds in arrivals:
        await asyncio.sleep(at - clock())
        _, (inp,) = await calls.create(f"rv-{app}", SYNC_INVOCATIONS[0], [(0, api_pb2.FunctionInput())])
        enqueued[inp.input_id] = app, clock(), seconds
        meter.update()
    while sum(map(len, delays)) < len(arrivals):
        await asyncio.sleep(1.0)

    every = [d for app in delays for d in app]
    total = meter.total
    return {
        "inputs": len(arrivals),
        "containers_started": counts["containers"],
        "started_from_zero": counts["from zero"],
        "reclaimed": counts["reclaimed"],
        "first_inputs": round(counts["first inputs"] / len(arrivals), 3),
        "waiting_s": round(total["waiting s"]),
        "busy_while_waiting": round(total["busy GPU-s"] / (GPUS * total["waiting s"]), 3),
        "running_while_waiting": round(total["running GPU-s"] / (GPUS * total["waiting s"]), 3),
        "busy_while_waiting_for_a_gpu": round(
            total["busy GPU-s while waiting for a GPU"] / (GPUS * total["waiting for a GPU s"]), 3
        ),
        "p50_s": round(percentile(every, 0.50), 2),
        "p95_s": round(percentile(every, 0.95), 2),
        "p99_s": round(percentile(every, 0.99), 2),
        "p95_per_app_s": [round(percentile(d, 0.95), 2) for d in delays],
        "warm_pool_p95_s": round(percentile(warm_pool_delays(arrivals), 0.95), 2),
    }


def main(
    hours: float = 4.0,
    seed: int = 1,
    burst_load: float = 2.0,
    cold_start: tuple[float, float] = (2.0, 5.0),
    exit_s: float = 0.5,
    scaledown_s: int = 60,
) -> dict:
    with asyncio.Runner(loop_factory=VirtualLoop) as runner:  # on leaving, it cancels what still runs
        r = runner.run(simulate(hours, seed, burst_load, cold_start, exit_s, scaledown_s))
    busy, p95 = r["busy_while_waiting"], r["p95_s"]
    print(
        f"pooling: {APPS} bursty apps on {GPUS} GPUs, {hours:g} h simulated (seed {seed}), burst load {burst_load:g},"
        f" cold start {cold_start[0]:g}-{cold_start[1]:g} s, exit {exit_s:g} s, scaledown {scaledown_s} s:"
        f" {r['inputs']} inputs, {r['containers_started']} containers started ({r['started_from_zero']} for a"
        f" function that had none), {r['reclaimed']} reclaimed by another app,"
        f" {r['first_inputs']:.1%} of inputs a new container's first"
    )
    print(
        f"  GPU-busy (cold-starting or running an input) while an input waits: {busy:.1%}"
        f" (target >= 85%: {'met' if busy >= 0.85 else 'not met'}); running inputs only"
        f" {r['running_while_waiting']:.1%}; while one waits for a GPU {r['busy_while_waiting_for_a_gpu']:.1%}"
    )
    print(
        f"  queueing delay: p50 {r['p50_s']} s, p95 {p95} s, p99 {r['p99_s']} s"
        f" (target p95 <= 2 s: {'met' if p95 <= 2 else 'not met'}); on {GPUS} always-warm GPUs,"
        f" first come first served, p95 {r['warm_pool_p95_s']} s"
    )
    print("  p95 per app: " + ", ".join(f"app{i} {p} s" for i, p in enumerate(r["p95_per_app_s"])))
    return r


if __name__ == "__main__":
    # Which app _fair_order serves first among apps with as many containers follows the order of
    # a set of revision ids, i.e. str hashing: fixed, so that a seed gives one result.
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "PYTHONHASHSEED": "0"})
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hours", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--burst-load", type=float, default=2.0, help="GPUs an app's burst would keep busy")
    parser.add_argument("--cold-start", default="2-5", help="seconds, uniform between the two")
    parser.add_argument("--exit", type=float, default=0.5, help="seconds a stopped container holds its GPU")
    parser.add_argument("--scaledown", type=int, default=60, help="the functions' scaledown window, seconds")
    args = parser.parse_args()
    low, high = (float(s) for s in args.cold_start.split("-"))
    main(args.hours, args.seed, args.burst_load, (low, high), args.exit, args.scaledown)
