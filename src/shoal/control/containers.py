"""The record of every container the platform started: who it ran for, and when it ran.

The scheduler keeps the live ones in memory; this is what outlives them, for
`modal container` commands about finished containers and for usage metering.

A container is recorded when it is placed (so `modal container stop|logs` find
it while it starts) but its life, what usage meters, runs from the moment its
process runs to the moment it exits: planning, materialising its image and
building the client package are the platform's time, not the container's. One
that never ran has no life.
"""

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import case, delete, insert, select, update

from ..store import schema as t
from ..store.database import Database
from ..worker.agent import Load
from ..worker.excess import GIB, Excess
from .errors import NotFound
from .scheduler import Task

# What a container is metered for when it requests no CPU or memory (Modal's defaults).
DEFAULT_MILLI_CPU = 125
DEFAULT_MEMORY_MB = 128


def reservation(milli_cpu: int, memory_mb: int) -> tuple[int, int]:
    """The CPU (millicores) and memory (MiB) a container that requested these is metered for at least."""
    return milli_cpu or DEFAULT_MILLI_CPU, memory_mb or DEFAULT_MEMORY_MB


@dataclass
class ContainerRecord:
    task_id: str
    app_id: str
    started_at: float
    finished_at: float | None


# A running container's use is stored this often (its excess whenever it changes), and kept
# this long: the longest range `modal function metrics` asks for.
SAMPLE_INTERVAL = 5.0
SAMPLES_KEPT = 31 * 86400


@dataclass
class _Noted:
    """What was last stored of a running container's use."""

    excess: Excess = field(default_factory=Excess)
    sampled_at: float = 0.0


class Containers:
    def __init__(self, db: Database):
        self.db = db
        self._running: dict[str, _Noted] = {}

    async def placed(self, task: Task) -> None:
        held = task.allocation
        milli_cpu, memory_mb = reservation(held.milli_cpu, held.memory_mb)
        async with self.db.tx() as conn:
            await conn.execute(
                insert(t.tasks).values(
                    task_id=task.task_id,
                    app_id=task.app_id,
                    function_id=task.function_id,
                    state="starting",
                    started_at=task.started_at,  # until it runs
                    milli_cpu=milli_cpu,
                    memory_mb=memory_mb,
                    gpu_type=held.gpus[0].gpu_type if held.gpus else "",
                    gpu_count=len(held.gpus),
                )
            )

    async def running(self, task_id: str, at: float) -> None:
        async with self.db.tx() as conn:
            started = await conn.execute(
                update(t.tasks)
                .where(t.tasks.c.task_id == task_id, t.tasks.c.state == "starting")  # never reopens a stopped one
                .values(state="running", started_at=at)
            )
        if started.rowcount:
            self._running[task_id] = _Noted()

    async def finished(
        self, task_id: str, exit_code: int, at: float, ready_at: float = 0.0, excess: Excess | None = None
    ) -> None:
        """`ready_at`: when it first asked for an input, if it did; `excess`: what it used above its
        reservation in all, if its worker could say (else what it last said stands)."""
        self._running.pop(task_id, None)
        values = _excess_columns(excess) if excess else {}
        async with self.db.tx() as conn:
            await conn.execute(
                update(t.tasks)
                .where(t.tasks.c.task_id == task_id)
                .values(exit_code=exit_code, ready_at=ready_at or None, **values, **_stopped(at))
            )

    async def note_usage(self, load: Load, at: float) -> None:
        """A worker's readings of its containers, once a second: what each has used above its
        reservation so far, stored where it changed, and every SAMPLE_INTERVAL what each uses now.
        Readings of a container that has exited meanwhile are too late: its exit's figures stand."""
        noted = {task_id: self._running[task_id] for task_id in load.task_cores if task_id in self._running}
        excess = {
            task_id: e
            for task_id, e in load.task_excess.items()
            if task_id in self._running and self._running[task_id].excess != e
        }
        due = [task_id for task_id, n in noted.items() if at - n.sampled_at >= SAMPLE_INTERVAL]
        if not excess and not due:
            return
        c = t.tasks.c
        async with self.db.tx() as conn:
            # A container whose exit was noted while this waited for the store keeps the exit's figures.
            excess = {task_id: e for task_id, e in excess.items() if task_id in self._running}
            due = [task_id for task_id in due if task_id in self._running]
            for task_id, e in excess.items():
                await conn.execute(update(t.tasks).where(c.task_id == task_id).values(**_excess_columns(e)))
            if due:
                samples = [
                    {
                        "task_id": task_id,
                        "at": at,
                        "cores": load.task_cores[task_id],
                        "memory_gib": load.task_memory.get(task_id, 0) / GIB,
                        "gpu_utilization": load.task_gpu_utilization.get(task_id),
                    }
                    for task_id in due
                ]
                await conn.execute(insert(t.task_samples), samples)
        for task_id, e in excess.items():
            if noting := self._running.get(task_id):
                noting.excess = e
        for task_id in due:
            if noting := self._running.get(task_id):
                noting.sampled_at = at

    async def forget_samples(self, now: float) -> None:
        """Samples older than SAMPLES_KEPT go."""
        async with self.db.tx() as conn:
            await conn.execute(delete(t.task_samples).where(t.task_samples.c.at < now - SAMPLES_KEPT))

    async def get(self, task_id: str) -> ContainerRecord:
        async with self.db.tx() as conn:
            row = (await conn.execute(select(t.tasks).where(t.tasks.c.task_id == task_id))).one_or_none()
        if row is None:
            raise NotFound(f"Container {task_id} not found")
        return ContainerRecord(row.task_id, row.app_id, row.started_at, row.finished_at)

    async def close_unfinished(self) -> None:
        """At start-up: containers of a previous run are gone (shoal removes them)."""
        async with self.db.tx() as conn:
            await conn.execute(update(t.tasks).where(t.tasks.c.finished_at.is_(None)).values(**_stopped(time.time())))


async def usage_samples(db: Database, function_ids: Sequence[str], since: float, until: float, task_id: str = ""):
    """The samples taken in [since, until) of the functions' containers (of one, if named): each
    row's at, cores, memory_gib and gpu_utilization (None but for containers given real GPUs)."""
    s, c = t.task_samples.c, t.tasks.c
    query = (
        select(s.at, s.cores, s.memory_gib, s.gpu_utilization)
        .join(t.tasks, c.task_id == s.task_id)
        .where(c.function_id.in_(function_ids), s.at >= since, s.at < until)
    )
    if task_id:
        query = query.where(s.task_id == task_id)
    async with db.tx() as conn:
        return (await conn.execute(query)).all()


def _excess_columns(excess: Excess) -> dict:
    return {
        "cpu_excess_core_seconds": excess.cpu_core_seconds,
        "memory_excess_gib_seconds": excess.memory_gib_seconds,
    }


def _stopped(at: float) -> dict:
    """The columns of a container stopped at `at`; one still starting never ran: no life to meter."""
    c = t.tasks.c
    return {"state": "stopped", "finished_at": at, "started_at": case((c.state == "starting", at), else_=c.started_at)}
