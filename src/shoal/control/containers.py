"""The record of every container the platform started: who it ran for, and when it ran.

The scheduler keeps the live ones in memory; this is what outlives them, for
`modal container` commands about finished containers and for usage metering.
"""

import time
from dataclasses import dataclass

from sqlalchemy import insert, select, update

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

    async def started(self, task: Task) -> None:
        held = task.allocation
        async with self.db.tx() as conn:
            await conn.execute(
                insert(t.tasks).values(
                    task_id=task.task_id,
                    app_id=task.app_id,
                    function_id=task.function_id,
                    state="running",
                    started_at=task.started_at,
                    milli_cpu=held.milli_cpu or DEFAULT_MILLI_CPU,
                    memory_mb=held.memory_mb or DEFAULT_MEMORY_MB,
                    gpu_type=held.gpus[0].gpu_type if held.gpus else "",
                    gpu_count=len(held.gpus),
                )
            )

    async def finished(self, task_id: str, exit_code: int) -> None:
        async with self.db.tx() as conn:
            await conn.execute(
                update(t.tasks)
                .where(t.tasks.c.task_id == task_id)
                .values(state="stopped", finished_at=time.time(), exit_code=exit_code)
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
            await conn.execute(
                update(t.tasks).where(t.tasks.c.finished_at.is_(None)).values(state="stopped", finished_at=time.time())
            )
