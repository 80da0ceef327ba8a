"""One store interface over two backends: SQLite (embedded) and PostgreSQL (cluster).

Both speak SQLAlchemy Core; the only differences live here: how the engine is
made and how SQLite is tuned for a single-process server.
"""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from .schema import metadata


def database_url(spec: str) -> str:
    """Accept a file path (SQLite) or a postgresql:// URL."""
    if spec.startswith(("postgresql://", "postgres://")):
        return "postgresql+asyncpg://" + spec.split("://", 1)[1]
    if "://" in spec:
        return spec
    return f"sqlite+aiosqlite:///{spec}"


class Database:
    def __init__(self, spec: str):
        self.url = database_url(spec)
        self.is_sqlite = self.url.startswith("sqlite")
        self.engine: AsyncEngine = create_async_engine(self.url, **self._engine_options())
        # One connection for SQLite means transactions must take turns on it.
        self._turn = asyncio.Lock() if self.is_sqlite else None
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _tune_sqlite)

    def _engine_options(self) -> dict:
        if self.is_sqlite:
            # One connection: SQLite serialises writers anyway, and a single
            # connection keeps every read consistent with the last write.
            from sqlalchemy.pool import StaticPool

            return {"poolclass": StaticPool}
        return {"pool_size": 10, "max_overflow": 20}

    async def create_schema(self) -> None:
        async with self.engine.begin() as conn:
            await conn.run_sync(metadata.create_all)

    @asynccontextmanager
    async def tx(self) -> AsyncIterator[AsyncConnection]:
        """A transaction: committed on normal exit, rolled back on error."""
        if self._turn is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        async with self._turn, self.engine.begin() as conn:
            yield conn

    async def close(self) -> None:
        await self.engine.dispose()


def _tune_sqlite(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    # WAL + NORMAL: commits are durable against process crashes without an
    # fsync per transaction, which keeps the call path fast.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()
