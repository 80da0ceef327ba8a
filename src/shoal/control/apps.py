"""Apps: their lifecycle, their named objects, and the environments they live in."""

import time
from dataclasses import dataclass

from modal_proto import api_pb2
from sqlalchemy import delete, insert, select, update

from ..store import schema as t
from ..store.database import Database
from .errors import InvalidArgument, NotFound
from .ids import new_id

DEFAULT_ENVIRONMENT = "main"
STOPPED_STATES = (api_pb2.APP_STATE_STOPPED, api_pb2.APP_STATE_STOPPING)


@dataclass
class App:
    app_id: str
    environment: str
    name: str | None
    description: str
    state: int
    created_at: float
    stopped_at: float | None
    last_heartbeat: float = 0.0


class Apps:
    def __init__(self, db: Database):
        self.db = db

    async def ensure_environment(self, name: str) -> str:
        name = name or DEFAULT_ENVIRONMENT
        async with self.db.tx() as conn:
            row = (
                await conn.execute(select(t.environments).where(t.environments.c.name == name))
            ).one_or_none()
            if row:
                return row.environment_id
            if name != DEFAULT_ENVIRONMENT:
                raise NotFound(f"Environment '{name}' not found")
            env_id = new_id("en")
            await conn.execute(insert(t.environments).values(name=name, environment_id=env_id, created_at=time.time()))
            return env_id

    async def create(self, environment: str, description: str, state: int, client_id: str = "") -> App:
        environment = environment or DEFAULT_ENVIRONMENT
        await self.ensure_environment(environment)
        app = App(new_id("ap"), environment, None, description, state or api_pb2.APP_STATE_EPHEMERAL, time.time(), None)
        async with self.db.tx() as conn:
            await conn.execute(
                insert(t.apps).values(
                    app_id=app.app_id,
                    environment=app.environment,
                    description=description,
                    state=app.state,
                    client_id=client_id,
                    created_at=app.created_at,
                )
            )
        return app

    async def get(self, app_id: str) -> App:
        async with self.db.tx() as conn:
            row = (await conn.execute(select(t.apps).where(t.apps.c.app_id == app_id))).one_or_none()
        if row is None:
            raise NotFound(f"App {app_id} not found")
        return _app(row)

    async def by_name(self, environment: str, name: str) -> App | None:
        async with self.db.tx() as conn:
            row = (
                await conn.execute(
                    select(t.apps)
                    .where(
                        t.apps.c.environment == (environment or DEFAULT_ENVIRONMENT),
                        t.apps.c.name == name,
                        t.apps.c.state.not_in(STOPPED_STATES),
                    )
                    .order_by(t.apps.c.created_at.desc())
                )
            ).first()
        return _app(row) if row else None

    async def in_environment(self, environment: str) -> list[App]:
        async with self.db.tx() as conn:
            rows = await conn.execute(
                select(t.apps)
                .where(t.apps.c.environment == (environment or DEFAULT_ENVIRONMENT))
                .order_by(t.apps.c.created_at)
            )
            return [_app(r) for r in rows]

    async def set_objects(self, app_id: str, objects: dict[str, str]) -> None:
        async with self.db.tx() as conn:
            await conn.execute(delete(t.app_objects).where(t.app_objects.c.app_id == app_id))
            if objects:
                await conn.execute(
                    insert(t.app_objects),
                    [dict(app_id=app_id, tag=tag, object_id=oid) for tag, oid in objects.items()],
                )

    async def objects(self, app_id: str) -> dict[str, str]:
        async with self.db.tx() as conn:
            rows = await conn.execute(select(t.app_objects).where(t.app_objects.c.app_id == app_id))
            return {r.tag: r.object_id for r in rows}

    async def publish(self, app_id: str, name: str, state: int) -> App:
        app = await self.get(app_id)
        if app.state in STOPPED_STATES:
            raise InvalidArgument(f"App {app_id} is stopped")
        values: dict = {"state": state or app.state}
        if name:
            values["name"] = name
        async with self.db.tx() as conn:
            await conn.execute(update(t.apps).where(t.apps.c.app_id == app_id).values(**values))
        return await self.get(app_id)

    async def mark_stopped(self, app_id: str) -> None:
        async with self.db.tx() as conn:
            await conn.execute(
                update(t.apps)
                .where(t.apps.c.app_id == app_id)
                .values(state=api_pb2.APP_STATE_STOPPED, stopped_at=time.time())
            )

    async def live_ephemeral(self) -> list[App]:
        async with self.db.tx() as conn:
            rows = await conn.execute(select(t.apps).where(t.apps.c.state == api_pb2.APP_STATE_EPHEMERAL))
            return [_app(r) for r in rows]


def _app(row) -> App:
    return App(row.app_id, row.environment, row.name, row.description, row.state, row.created_at, row.stopped_at)
