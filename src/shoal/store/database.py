"""One store interface over two backends: SQLite (embedded) and PostgreSQL (cluster).

Both speak SQLAlchemy Core and the domain writes `async with db.tx() as conn:
await conn.execute(...)` for either. The differences live here: PostgreSQL runs
on asyncpg; SQLite runs in the server's own thread, because a local SQLite
statement takes microseconds while handing it to a worker thread and back costs
more than the statement (this is on every call's path).

Transactions run one at a time on both: SQLite's by a lock in the process, PostgreSQL's
by an advisory lock every transaction takes first, which holds across replicas too.
The domain reads and then writes in one transaction (the next version number, get or
create), and this is what keeps that correct without retries.
"""

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import Connection, create_engine, event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import StaticPool

CHECKPOINT_INTERVAL = 1.0
_ONE_AT_A_TIME = text("SELECT pg_advisory_xact_lock(7370)")  # any fixed key: shoal's own


class ValueRejected(Exception):
    """A value the database cannot hold: longer than its column, or with a NUL character."""


def database_url(spec: str) -> str:
    """Accept a file path (SQLite) or a postgresql:// URL."""
    if spec.startswith(("postgresql://", "postgres://")):
        return "postgresql+asyncpg://" + spec.split("://", 1)[1]
    if "://" in spec:
        return spec
    return f"sqlite:///{spec}"


class _InlineConnection:
    """A synchronous SQLite connection behind the async connection's interface."""

    def __init__(self, conn: Connection):
        self._conn = conn

    async def execute(self, statement, parameters: Any = None):
        return self._conn.execute(statement, parameters)

    async def run_sync(self, fn: Callable[[Connection], Any]) -> Any:
        return fn(self._conn)


class Database:
    def __init__(self, spec: str):
        self.url = database_url(spec)
        self.is_sqlite = self.url.startswith("sqlite")
        if self.is_sqlite:
            # One connection: SQLite serialises writers anyway, and a single
            # connection keeps every read consistent with the last write.
            self._sync_engine = create_engine(self.url, poolclass=StaticPool)
            event.listen(self._sync_engine, "connect", _tune_sqlite)
            self._turn = asyncio.Lock()
            self._checkpointer: asyncio.Task | None = None
        else:
            self._async_engine = create_async_engine(self.url, pool_size=10, max_overflow=20)

    async def create_schema(self) -> None:
        """Create the store, or bring one an older shoal made up to this one's schema."""
        from . import migrations  # here: Alembic is only needed at start-up, not by every command

        async with self.tx() as conn:
            await conn.run_sync(migrations.upgrade)
        if self.is_sqlite and self._checkpointer is None:
            self._checkpointer = asyncio.create_task(self._checkpoints())

    async def _checkpoints(self) -> None:
        """Fold the write-ahead log into the database every second, off the server's thread."""
        path = self.url.removeprefix("sqlite:///")
        conn = await asyncio.to_thread(sqlite3.connect, path, check_same_thread=False)
        try:
            while True:
                await asyncio.sleep(CHECKPOINT_INTERVAL)
                await asyncio.to_thread(conn.execute, "PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            conn.close()

    @asynccontextmanager
    async def tx(self) -> AsyncIterator[Any]:
        """A transaction: committed on normal exit, rolled back on error."""
        if not self.is_sqlite:
            try:
                async with self._async_engine.begin() as conn:
                    await conn.execute(_ONE_AT_A_TIME)
                    yield conn
            except DBAPIError as e:
                # SQLSTATE class 22, data exception; SQLite stores such values as they are.
                if not str(getattr(e.orig, "sqlstate", "")).startswith("22"):
                    raise
                raise ValueRejected(f"A value in the request cannot be stored: {str(e.orig).splitlines()[0]}") from None
            return
        async with self._turn:
            with self._sync_engine.begin() as conn:
                yield _InlineConnection(conn)

    async def close(self) -> None:
        if self.is_sqlite:
            if self._checkpointer:
                self._checkpointer.cancel()
            self._sync_engine.dispose()
        else:
            await self._async_engine.dispose()


def _tune_sqlite(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    # WAL + NORMAL: commits are durable against process crashes without an
    # fsync per transaction, which keeps the call path fast.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=5000")
    # Checkpoints fsync: they run in a thread of their own (Database._checkpoints),
    # never inside a transaction on the server's thread.
    cur.execute("PRAGMA wal_autocheckpoint=0")
    cur.execute("PRAGMA journal_size_limit=67108864")
    cur.close()
