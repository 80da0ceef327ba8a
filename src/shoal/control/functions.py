"""Function and class definitions as the client declared them."""

import time

from modal_proto import api_pb2
from sqlalchemy import insert, select, update

from ..store import schema as t
from ..store.database import Database
from .errors import NotFound
from .ids import new_id


class Functions:
    def __init__(self, db: Database):
        self.db = db
        self._defs: dict[str, api_pb2.Function] = {}
        self._app_of: dict[str, str] = {}
        self._params: dict[str, bytes] = {}
        self._bound: dict[tuple[str, bytes], str] = {}

    async def precreate(self, app_id: str, tag: str, existing_id: str = "") -> str:
        if existing_id:
            return existing_id
        function_id = new_id("fu")
        async with self.db.tx() as conn:
            await conn.execute(
                insert(t.functions).values(function_id=function_id, app_id=app_id, tag=tag, created_at=time.time())
            )
        self._app_of[function_id] = app_id
        return function_id

    async def create(self, app_id: str, definition: api_pb2.Function, existing_id: str = "") -> str:
        function_id = existing_id or await self.precreate(app_id, definition.function_name)
        async with self.db.tx() as conn:
            await conn.execute(
                update(t.functions)
                .where(t.functions.c.function_id == function_id)
                .values(definition=definition.SerializeToString(), app_id=app_id)
            )
        self._defs[function_id] = definition
        self._app_of[function_id] = app_id
        return function_id

    async def get(self, function_id: str) -> api_pb2.Function:
        fdef = self._defs.get(function_id)
        if fdef is None:
            async with self.db.tx() as conn:
                row = (
                    await conn.execute(select(t.functions).where(t.functions.c.function_id == function_id))
                ).one_or_none()
            if row is None or not row.definition:
                raise NotFound(f"Function {function_id} not found")
            fdef = self._defs[function_id] = api_pb2.Function.FromString(row.definition)
            self._app_of[function_id] = row.app_id
            if row.bound_params is not None:
                self._params[function_id] = row.bound_params
        return fdef

    async def bind(self, function_id: str, serialized_params: bytes) -> str:
        """A class's function with its constructor parameters bound: its own containers."""
        key = (function_id, serialized_params)
        if key in self._bound:
            return self._bound[key]
        fdef = await self.get(function_id)
        app_id = self._app_of[function_id]
        bound_id = new_id("fu")
        async with self.db.tx() as conn:
            await conn.execute(
                insert(t.functions).values(
                    function_id=bound_id,
                    app_id=app_id,
                    tag=fdef.function_name,
                    definition=fdef.SerializeToString(),
                    bound_params=serialized_params,
                    created_at=time.time(),
                )
            )
        self._defs[bound_id] = fdef
        self._app_of[bound_id] = app_id
        self._params[bound_id] = serialized_params
        self._bound[key] = bound_id
        return bound_id

    def params(self, function_id: str) -> bytes:
        return self._params.get(function_id, b"")

    def cached(self, function_id: str) -> api_pb2.Function | None:
        return self._defs.get(function_id)

    async def app_of(self, function_id: str) -> str:
        if function_id not in self._app_of:
            await self.get(function_id)
        return self._app_of[function_id]

    async def create_class(self, app_id: str, tag: str) -> str:
        class_id = new_id("cs")
        async with self.db.tx() as conn:
            await conn.execute(
                insert(t.classes).values(class_id=class_id, app_id=app_id, tag=tag, created_at=time.time())
            )
        return class_id


def retry_policy(fdef: api_pb2.Function | None) -> api_pb2.FunctionRetryPolicy:
    if fdef is None or not fdef.HasField("retry_policy"):
        return api_pb2.FunctionRetryPolicy()
    return fdef.retry_policy
