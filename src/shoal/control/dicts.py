"""Dicts (`modal.Dict`): key-value maps shared by clients and containers, kept in the store.

Named and ephemeral ones follow named_objects.py. Keys and values are the bytes
the client serialized; two keys are the same key when their bytes are.
"""

import hashlib
from collections.abc import Iterable

from sqlalchemy import delete, func, insert, select

from ..store import schema as t
from ..store.database import Database
from .named_objects import NamedObject, NamedObjects

e = t.dict_entries.c


def _sha(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()


class Dicts:
    def __init__(self, db: Database):
        self.db = db
        self.objects = NamedObjects(db, t.dicts, "Dict", "di")

    async def get_or_create(
        self, name: str, environment: str, creation: int, data: Iterable[tuple[bytes, bytes]]
    ) -> NamedObject:
        """The dict; one this request creates starts with `data`."""
        d, created = await self.objects.get_or_create(name, environment, creation)
        if created and data:
            await self.update(d.object_id, data, if_not_exists=False)
        return d

    async def delete(self, dict_id: str) -> None:
        await self.objects.delete(dict_id)
        async with self.db.tx() as conn:
            await conn.execute(delete(t.dict_entries).where(e.dict_id == dict_id))

    async def get(self, dict_id: str, key: bytes) -> bytes | None:
        async with self.db.tx() as conn:
            await self.objects.check(conn, dict_id)
            return (
                await conn.execute(select(e.value).where(e.dict_id == dict_id, e.key_sha256 == _sha(key)))
            ).scalar_one_or_none()

    async def update(self, dict_id: str, entries: Iterable[tuple[bytes, bytes]], if_not_exists: bool) -> bool:
        """Set the entries (all or, with if_not_exists, only when no key is there yet); whether it did."""
        latest = {_sha(k): (k, v) for k, v in entries}  # the last of a key's values wins, as in dict.update
        async with self.db.tx() as conn:
            await self.objects.check(conn, dict_id)
            present = e.dict_id == dict_id, e.key_sha256.in_(latest)
            if if_not_exists and (await conn.execute(select(func.count()).where(*present))).scalar_one():
                return False
            await conn.execute(delete(t.dict_entries).where(*present))
            if latest:
                await conn.execute(
                    insert(t.dict_entries),
                    [{"dict_id": dict_id, "key_sha256": s, "key": k, "value": v} for s, (k, v) in latest.items()],
                )
        return True

    async def pop(self, dict_id: str, key: bytes) -> bytes | None:
        where = e.dict_id == dict_id, e.key_sha256 == _sha(key)
        async with self.db.tx() as conn:
            await self.objects.check(conn, dict_id)
            value = (await conn.execute(select(e.value).where(*where))).scalar_one_or_none()
            await conn.execute(delete(t.dict_entries).where(*where))
        return value

    async def length(self, dict_id: str) -> int:
        async with self.db.tx() as conn:
            await self.objects.check(conn, dict_id)
            return (await conn.execute(select(func.count()).where(e.dict_id == dict_id))).scalar_one()

    async def contents(self, dict_id: str) -> list[tuple[bytes, bytes]]:
        async with self.db.tx() as conn:
            await self.objects.check(conn, dict_id)
            rows = await conn.execute(select(e.key, e.value).where(e.dict_id == dict_id))
            return [(row.key, row.value) for row in rows]

    async def clear(self, dict_id: str) -> None:
        async with self.db.tx() as conn:
            await self.objects.check(conn, dict_id)
            await conn.execute(delete(t.dict_entries).where(e.dict_id == dict_id))
