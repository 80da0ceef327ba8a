"""Objects the client names or makes ephemeral: volumes, dicts and queues share these rules.

A named one lives in an environment under its name until it is deleted; an
ephemeral one (`X.ephemeral()`) has no name and lives while its client sends
heartbeats. Each kind has a table of its own with the same columns: its id,
environment, name, created_at and heartbeat_at.
"""

import time
from dataclasses import dataclass

from modal_proto import api_pb2
from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from ..store.database import Database
from .apps import DEFAULT_ENVIRONMENT, valid_object_name
from .errors import AlreadyExists, InvalidArgument, NotFound
from .ids import new_id

Creation = api_pb2.ObjectCreationType
# The client heartbeats an ephemeral object every 300 s; three missed ones end it.
EPHEMERAL_TIMEOUT = 900.0


@dataclass
class NamedObject:
    object_id: str
    environment: str
    name: str | None  # None: ephemeral
    created_at: float

    def creation_info(self) -> api_pb2.CreationInfo:
        return api_pb2.CreationInfo(created_at=self.created_at)


class NamedObjects:
    def __init__(self, db: Database, table: Table, kind: str, prefix: str):
        self.db = db
        self.table = table
        self.kind = kind  # "Volume", as the client's messages name it
        self.prefix = prefix
        self.id = table.c[f"{kind.lower()}_id"]

    async def get_or_create(self, name: str, environment: str, creation: int) -> tuple[NamedObject, bool]:
        """The object, and whether this request created it."""
        environment = environment or DEFAULT_ENVIRONMENT
        if creation == Creation.OBJECT_CREATION_TYPE_EPHEMERAL:
            return await self._create(environment, None, time.time()), True
        if not valid_object_name(name):
            raise InvalidArgument(
                f"Invalid {self.kind.lower()} name {name!r}: "
                "use letters, digits, '-', '_' and '.', at most 64 characters"
            )
        existing = await self._named(environment, name)
        if creation == Creation.OBJECT_CREATION_TYPE_UNSPECIFIED:
            if existing is None:
                raise NotFound(f"{self.kind} '{name}' not found in environment '{environment}'")
            return existing, False
        fail_if_exists = creation == Creation.OBJECT_CREATION_TYPE_CREATE_FAIL_IF_EXISTS
        if not fail_if_exists and creation != Creation.OBJECT_CREATION_TYPE_CREATE_IF_MISSING:
            raise InvalidArgument(f"{self.kind} '{name}': object creation type {creation} is not supported")
        if existing is not None:
            if fail_if_exists:
                raise AlreadyExists(f"{self.kind} '{name}' already exists in environment '{environment}'")
            return existing, False
        try:
            return await self._create(environment, name, None), True
        except IntegrityError:  # created meanwhile by another request
            if fail_if_exists:
                raise AlreadyExists(f"{self.kind} '{name}' already exists in environment '{environment}'") from None
            return await self.get_named(environment, name), False

    async def _create(self, environment: str, name: str | None, heartbeat_at: float | None) -> NamedObject:
        obj = NamedObject(new_id(self.prefix), environment, name, time.time())
        async with self.db.tx() as conn:
            await conn.execute(
                insert(self.table).values(
                    {
                        self.id.name: obj.object_id,
                        "environment": environment,
                        "name": name,
                        "created_at": obj.created_at,
                        "heartbeat_at": heartbeat_at,
                    }
                )
            )
        return obj

    async def _named(self, environment: str, name: str) -> NamedObject | None:
        c = self.table.c
        async with self.db.tx() as conn:
            row = (await conn.execute(select(self.table).where(c.environment == environment, c.name == name))).first()
        return self._object(row) if row else None

    async def get_named(self, environment: str, name: str) -> NamedObject:
        environment = environment or DEFAULT_ENVIRONMENT
        obj = await self._named(environment, name)
        if obj is None:
            raise NotFound(f"{self.kind} '{name}' not found in environment '{environment}'")
        return obj

    async def check(self, conn, object_id: str) -> None:
        """NotFound for an unknown id, in the transaction of the operation that needs it there."""
        if (await conn.execute(select(self.id).where(self.id == object_id))).first() is None:
            raise NotFound(f"{self.kind} {object_id} not found")

    async def get(self, object_id: str) -> NamedObject:
        async with self.db.tx() as conn:
            row = (await conn.execute(select(self.table).where(self.id == object_id))).first()
        if row is None:
            raise NotFound(f"{self.kind} {object_id} not found")
        return self._object(row)

    async def in_environment(self, environment: str, limit: int, created_before: float) -> list[NamedObject]:
        """Named ones, newest first."""
        c = self.table.c
        query = (
            select(self.table)
            .where(c.environment == (environment or DEFAULT_ENVIRONMENT), c.name.is_not(None))
            .order_by(c.created_at.desc())
        )
        if created_before > 0:
            query = query.where(c.created_at < created_before)
        if limit > 0:
            query = query.limit(limit)
        async with self.db.tx() as conn:
            return [self._object(row) for row in await conn.execute(query)]

    async def rename(self, object_id: str, name: str) -> None:
        obj = await self.get(object_id)
        if obj.name is None:
            raise InvalidArgument(f"An ephemeral {self.kind.lower()} has no name to change")
        if not valid_object_name(name):
            raise InvalidArgument(f"Invalid {self.kind.lower()} name {name!r}")
        try:
            async with self.db.tx() as conn:
                await conn.execute(update(self.table).where(self.id == object_id).values(name=name))
        except IntegrityError:
            raise AlreadyExists(f"{self.kind} '{name}' already exists in environment '{obj.environment}'") from None

    async def heartbeat(self, object_id: str) -> None:
        async with self.db.tx() as conn:
            result = await conn.execute(
                update(self.table)
                .where(self.id == object_id, self.table.c.name.is_(None))
                .values(heartbeat_at=time.time())
            )
        if result.rowcount == 0:
            await self.get(object_id)  # NotFound for an unknown one; a named one needs no heartbeat

    async def delete(self, object_id: str) -> None:
        async with self.db.tx() as conn:
            deleted = await conn.execute(delete(self.table).where(self.id == object_id))
        if deleted.rowcount == 0:
            raise NotFound(f"{self.kind} {object_id} not found")

    async def ids_in_environment(self, environment: str) -> list[str]:
        async with self.db.tx() as conn:
            return [
                row[0] for row in await conn.execute(select(self.id).where(self.table.c.environment == environment))
            ]

    async def expired(self, now: float) -> list[str]:
        """Ephemeral ones whose client stopped sending heartbeats."""
        c = self.table.c
        async with self.db.tx() as conn:
            rows = await conn.execute(select(self.id).where(c.name.is_(None), c.heartbeat_at < now - EPHEMERAL_TIMEOUT))
            return [row[0] for row in rows]

    def _object(self, row) -> NamedObject:
        return NamedObject(getattr(row, self.id.name), row.environment, row.name, row.created_at)
