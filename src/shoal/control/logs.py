"""App logs: container output and system messages, kept per app and followed live."""

import time
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import insert, select

from ..store import schema as t
from ..store.database import Database
from .pulse import Pulse


@dataclass
class LogEntry:
    seq: int
    task_id: str
    function_id: str
    fd: int
    data: str
    ts: float
    function_call_id: str = ""
    input_id: str = ""


class Logs:
    """Writes go to the store; readers long-poll on a per-app pulse."""

    def __init__(self, db: Database):
        self.db = db
        self._pulse: dict[str, Pulse] = defaultdict(Pulse)
        self._done: set[str] = set()

    async def append(
        self,
        app_id: str,
        task_id: str,
        function_id: str,
        fd: int,
        data: str,
        at: float = 0.0,
        function_call_id: str = "",
        input_id: str = "",
    ) -> None:
        """`at`: when the container printed it (default now)."""
        async with self.db.tx() as conn:
            await conn.execute(
                insert(t.app_logs).values(
                    app_id=app_id,
                    task_id=task_id,
                    function_id=function_id,
                    function_call_id=function_call_id,
                    input_id=input_id,
                    fd=fd,
                    data=data,
                    ts=at or time.time(),
                )
            )
        self._pulse[app_id].notify()

    def mark_done(self, app_id: str) -> None:
        self._done.add(app_id)
        self._pulse[app_id].notify()

    def is_done(self, app_id: str) -> bool:
        return app_id in self._done

    async def read(self, app_id: str, after_seq: int, timeout: float) -> list[LogEntry]:
        entries = await self._since(app_id, after_seq)
        if not entries and not self.is_done(app_id):
            await self._pulse[app_id].wait(timeout)
            entries = await self._since(app_id, after_seq)
        return entries

    async def fetch(
        self,
        app_id: str,
        since: float,
        until: float,
        limit: int,
        function_id: str = "",
        task_id: str = "",
        fd: int = 0,
        search: str = "",
        function_call_id: str = "",
    ) -> list[LogEntry]:
        """The newest `limit` entries in [since, until), oldest first."""
        c = t.app_logs.c
        query = select(t.app_logs).where(c.app_id == app_id, c.ts >= since, c.ts < until, c.data != "")
        if function_id:
            query = query.where(c.function_id == function_id)
        if function_call_id:
            query = query.where(c.function_call_id == function_call_id)
        if task_id:
            query = query.where(c.task_id == task_id)
        if fd:
            query = query.where(c.fd == fd)
        if search:
            query = query.where(c.data.contains(search, autoescape=True))
        async with self.db.tx() as conn:
            rows = list(await conn.execute(query.order_by(c.seq.desc()).limit(limit or 100)))
        return [_entry(r) for r in reversed(rows)]

    async def _since(self, app_id: str, after_seq: int) -> list[LogEntry]:
        async with self.db.tx() as conn:
            rows = await conn.execute(
                select(t.app_logs)
                .where(t.app_logs.c.app_id == app_id, t.app_logs.c.seq > after_seq)
                .order_by(t.app_logs.c.seq)
            )
            return [_entry(r) for r in rows]


def _entry(row) -> LogEntry:
    return LogEntry(row.seq, row.task_id, row.function_id, row.fd, row.data, row.ts, row.function_call_id, row.input_id)
