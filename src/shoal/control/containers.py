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
from dataclasses import dataclass

from sqlalchemy import case, insert, select, update

from ..store import schema as t
from ..store.database import Database
from .errors import NotFound
from .scheduler import Task

# What a container is metered for when it requests no CPU or memory (Modal's defaults).
DEFAULT_MILLI_CPU = 125
DEFAULT_MEMORY_MB = 128


@dataclass
class ContainerRecord:
    task_id: str
    app_id: str
    started_at: float
    finished_at: float | None


class Containers:
    def __init__(self, db: Database):
        self.db = db

    async def placed(self, task: Task) -> None:
        held = task.allocation
        async with self.db.tx() as conn:
            await conn.execute(
                insert(t.tasks).values(
                    task_id=task.task_id,
                    app_id=task.app_id,
                    function_id=task.function_id,
                    state="starting",
                    started_at=task.started_at,  # until it runs
                    milli_cpu=held.milli_cpu or DEFAULT_MILLI_CPU,
                    memory_mb=held.memory_mb or DEFAULT_MEMORY_MB,
                    gpu_type=held.gpus[0].gpu_type if held.gpus else "",
                    gpu_count=len(held.gpus),
                )
            )

    async def running(self, task_id: str, at: float) -> None:
        async with self.db.tx() as conn:
            await conn.execute(
                update(t.tasks)
                .where(t.tasks.c.task_id == task_id, t.tasks.c.state == "starting")  # never reopens a stopped one
                .values(state="running", started_at=at)
            )

    async def finished(self, task_id: str, exit_code: int, at: float, ready_at: float = 0.0) -> None:
        """`ready_at`: when it first asked for an input, if it did."""
        async with self.db.tx() as conn:
            await conn.execute(
                update(t.tasks)
                .where(t.tasks.c.task_id == task_id)
                .values(exit_code=exit_code, ready_at=ready_at or None, **_stopped(at))
            )

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


def _stopped(at: float) -> dict:
    """The columns of a container stopped at `at`; one still starting never ran: no life to meter."""
    c = t.tasks.c
    return {"state": "stopped", "finished_at": at, "started_at": case((c.state == "starting", at), else_=c.started_at)}
