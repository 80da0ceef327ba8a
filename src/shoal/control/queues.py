"""Queues (`modal.Queue`): FIFO queues shared by clients and containers, kept in the store.

Named and ephemeral ones follow named_objects.py. Each queue has partitions (the
default one has the empty key), each first in, first out, holding at most
PARTITION_LIMIT items as in Modal: a put past it is refused with
RESOURCE_EXHAUSTED, which a blocking put retries. A get waiting for an item is
woken by the put that brings one. A partition is dropped, items and all, once the
partition_ttl of its last put has passed: every operation on a queue drops its
expired partitions first, and a periodic sweep reclaims those no one touches.
"""

import asyncio
import time

from sqlalchemy import delete, func, insert, select, update

from ..store import schema as t
from ..store.database import Database
from .errors import InvalidArgument, ResourceExhausted
from .named_objects import NamedObjects

PARTITION_LIMIT = 5_000
PARTITION_KEY_BYTES = 64  # the client's own bound
NEXT_ITEMS_BATCH = 100
DEFAULT_PARTITION_TTL = 24 * 3600  # the client's own default, for a put that gives none
q = t.queue_items.c
p = t.queue_partitions.c


class Queues:
    def __init__(self, db: Database):
        self.db = db
        self.objects = NamedObjects(db, t.queues, "Queue", "qu")
        self._arrivals: dict[str, asyncio.Event] = {}  # queue id -> set when an item is put

    async def delete(self, queue_id: str) -> None:
        await self.objects.delete(queue_id)
        async with self.db.tx() as conn:
            await conn.execute(delete(t.queue_items).where(q.queue_id == queue_id))
            await conn.execute(delete(t.queue_partitions).where(p.queue_id == queue_id))

    async def drop_expired(self) -> None:
        """Reclaim the expired partitions of every queue, those no one has touched since too."""
        async with self.db.tx() as conn:
            await _drop_expired(conn)

    async def put(self, queue_id: str, partition: bytes, values: list[bytes], ttl: float = 0) -> None:
        """Append values to the partition, which then expires ttl seconds from now (0: the default)."""
        async with self.db.tx() as conn:
            await self._check(conn, queue_id)
            held = (await conn.execute(select(func.count()).where(*_in(queue_id, partition)))).scalar_one()
            if held + len(values) > PARTITION_LIMIT:
                raise ResourceExhausted(
                    f"Queue {queue_id} is full: a partition holds at most {PARTITION_LIMIT:,} items, it has {held:,}"
                )
            if values:
                await conn.execute(
                    insert(t.queue_items),
                    [{"queue_id": queue_id, "partition": partition.hex(), "value": v} for v in values],
                )
                await _expires(conn, queue_id, partition.hex(), time.time() + (ttl or DEFAULT_PARTITION_TTL))
        if event := self._arrivals.pop(queue_id, None):
            event.set()

    async def get(self, queue_id: str, partition: bytes, n_values: int, timeout: float) -> list[bytes]:
        """Take up to n_values from the front of the partition, waiting up to timeout for the first."""
        return await self._when_there(queue_id, timeout, lambda: self._take(queue_id, partition, max(1, n_values)))

    async def _take(self, queue_id: str, partition: bytes, n: int) -> list[bytes]:
        async with self.db.tx() as conn:
            await self._check(conn, queue_id)
            rows = (
                await conn.execute(select(q.seq, q.value).where(*_in(queue_id, partition)).order_by(q.seq).limit(n))
            ).all()
            if rows:
                await conn.execute(delete(t.queue_items).where(q.seq.in_([r.seq for r in rows])))
        return [r.value for r in rows]

    async def next_items(self, queue_id: str, partition: bytes, after: int, timeout: float) -> list[tuple[int, bytes]]:
        """The items after entry `after`, left in place (Queue.iterate), waiting up to timeout for one."""

        async def read() -> list[tuple[int, bytes]]:
            async with self.db.tx() as conn:
                await self._check(conn, queue_id)
                rows = await conn.execute(
                    select(q.seq, q.value)
                    .where(*_in(queue_id, partition), q.seq > after)
                    .order_by(q.seq)
                    .limit(NEXT_ITEMS_BATCH)
                )
                return [(r.seq, r.value) for r in rows]

        return await self._when_there(queue_id, timeout, read)

    async def _check(self, conn, queue_id: str) -> None:
        """NotFound for an unknown queue; its expired partitions dropped, so that no one reads them."""
        await self.objects.check(conn, queue_id)
        await _drop_expired(conn, p.queue_id == queue_id)

    async def _when_there(self, queue_id: str, timeout: float, attempt):
        deadline = time.monotonic() + timeout
        while True:
            arrival = self._arrivals.setdefault(queue_id, asyncio.Event())  # before looking: no put is missed
            found = await attempt()
            remaining = deadline - time.monotonic()
            if found or remaining <= 0:
                return found
            try:
                await asyncio.wait_for(arrival.wait(), remaining)
            except TimeoutError:
                pass

    async def length(self, queue_id: str, partition: bytes, total: bool) -> int:
        where = (q.queue_id == queue_id,) if total else _in(queue_id, partition)
        async with self.db.tx() as conn:
            await self._check(conn, queue_id)
            return (await conn.execute(select(func.count()).where(*where))).scalar_one()

    async def sizes(self, queue_ids: list[str]) -> dict[str, tuple[int, int]]:
        """Per queue that holds items: how many partitions hold some, and how many items in all."""
        query = (
            select(q.queue_id, func.count(q.partition.distinct()), func.count())
            .where(q.queue_id.in_(queue_ids))
            .group_by(q.queue_id)
        )
        async with self.db.tx() as conn:
            await _drop_expired(conn, p.queue_id.in_(queue_ids))
            return {row[0]: (row[1], row[2]) for row in await conn.execute(query)}

    async def clear(self, queue_id: str, partition: bytes, all_partitions: bool) -> None:
        where = (q.queue_id == queue_id,) if all_partitions else _in(queue_id, partition)
        async with self.db.tx() as conn:
            await self._check(conn, queue_id)
            await conn.execute(delete(t.queue_items).where(*where))


def _in(queue_id: str, partition: bytes) -> tuple:
    if len(partition) > PARTITION_KEY_BYTES:
        raise InvalidArgument(f"A queue partition key has at most {PARTITION_KEY_BYTES} bytes")
    return q.queue_id == queue_id, q.partition == partition.hex()


async def _expires(conn, queue_id: str, partition: str, at: float) -> None:
    # Update, else insert: no other transaction runs in between (store/database.py).
    key = p.queue_id == queue_id, p.partition == partition
    if not (await conn.execute(update(t.queue_partitions).where(*key).values(expires_at=at))).rowcount:
        await conn.execute(insert(t.queue_partitions).values(queue_id=queue_id, partition=partition, expires_at=at))


async def _drop_expired(conn, *where) -> None:
    """Delete the partitions (of the queues `where` picks) whose TTL has run out, items and all."""
    expired = p.expires_at <= time.time(), *where
    rows = (await conn.execute(select(p.queue_id, p.partition).where(*expired))).all()
    for queue_id, partition in rows:
        await conn.execute(delete(t.queue_items).where(q.queue_id == queue_id, q.partition == partition))
    if rows:
        await conn.execute(delete(t.queue_partitions).where(*expired))
