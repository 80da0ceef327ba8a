"""Apps: their lifecycle, their named objects, and the environments they live in."""

import json
import re
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from modal_proto import api_pb2
from sqlalchemy import delete, insert, select, update

from ..store import schema as t
from ..store.database import Database
from .errors import AlreadyExists, InvalidArgument, NotFound
from .ids import new_id

DEFAULT_ENVIRONMENT = "main"
WORKSPACE_NAME = "shoal"  # a shoal server is one workspace
_ENV_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_TAG = re.compile(r"[A-Za-z0-9._-]{1,63}")  # the client's own rule for tag keys and values
_APP_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")  # the client's own rule for object names...
_APP_ID = re.compile(r"ap-[A-Za-z0-9]{22}")  # ...which may not look like an app id
STOPPED_STATES = (api_pb2.APP_STATE_STOPPED, api_pb2.APP_STATE_STOPPING)
# The states a client creates an app in (`modal run`, `--detach`, `modal deploy`), and those it publishes it in.
_CREATED_STATES = (api_pb2.APP_STATE_EPHEMERAL, api_pb2.APP_STATE_DETACHED, api_pb2.APP_STATE_INITIALIZING)
_PUBLISHED_STATES = (api_pb2.APP_STATE_EPHEMERAL, api_pb2.APP_STATE_DETACHED, api_pb2.APP_STATE_DEPLOYED)


@dataclass
class Environment:
    name: str
    environment_id: str
    created_at: float


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
    tags: dict[str, str] = field(default_factory=dict)
    entrypoint_done: bool = False  # a detached app whose local entrypoint returned


class Apps:
    def __init__(self, db: Database):
        self.db = db

    async def ensure_environment(self, name: str) -> str:
        name = name or DEFAULT_ENVIRONMENT
        async with self.db.tx() as conn:
            row = (await conn.execute(select(t.environments).where(t.environments.c.name == name))).one_or_none()
            if row:
                return row.environment_id
            if name != DEFAULT_ENVIRONMENT:
                raise NotFound(f"Environment '{name}' not found")
            env_id = new_id("en")
            await conn.execute(insert(t.environments).values(name=name, environment_id=env_id, created_at=time.time()))
            return env_id

    async def create(
        self, environment: str, description: str, state: int, client_id: str = "", tags: Mapping[str, str] = {}
    ) -> App:
        environment = environment or DEFAULT_ENVIRONMENT
        state = state or api_pb2.APP_STATE_EPHEMERAL
        _check_state(state, _CREATED_STATES)
        await self.ensure_environment(environment)
        app = App(
            new_id("ap"),
            environment,
            None,
            description,
            state,
            time.time(),
            None,
            tags=_checked(tags),
        )
        async with self.db.tx() as conn:
            await conn.execute(
                insert(t.apps).values(
                    app_id=app.app_id,
                    environment=app.environment,
                    description=description,
                    state=app.state,
                    client_id=client_id,
                    created_at=app.created_at,
                    tags=json.dumps(app.tags),
                )
            )
        return app

    async def set_tags(self, app_id: str, tags: Mapping[str, str]) -> None:
        """Replaces the app's tags."""
        checked = _checked(tags)
        await self.get(app_id)
        async with self.db.tx() as conn:
            await conn.execute(update(t.apps).where(t.apps.c.app_id == app_id).values(tags=json.dumps(checked)))

    async def get(self, app_id: str) -> App:
        async with self.db.tx() as conn:
            row = (await conn.execute(select(t.apps).where(t.apps.c.app_id == app_id))).one_or_none()
        if row is None:
            raise NotFound(f"App {app_id} not found")
        return _app(row)

    async def by_name(self, environment: str, name: str) -> App | None:
        """The running or deployed app of that name."""
        return await self._named(environment, name, stopped=False)

    async def get_or_create(self, environment: str, name: str, create: bool) -> App:
        """The running or deployed app of that name (`App.lookup`); with `create`, if there is none,
        a deployed app with nothing in it yet, for sandboxes to run in or a later deploy to fill."""
        environment = environment or DEFAULT_ENVIRONMENT
        if app := await self.by_name(environment, name):
            return app
        if not create:
            raise NotFound(f"App '{name}' not found in environment '{environment}'")
        app = await self.create(environment, name, api_pb2.APP_STATE_INITIALIZING)
        return await self.publish(app.app_id, name, api_pb2.APP_STATE_DEPLOYED)

    async def last_stopped(self, environment: str, name: str) -> App | None:
        """The most recently stopped app of that name, for commands that still name it."""
        return await self._named(environment, name, stopped=True)

    async def _named(self, environment: str, name: str, stopped: bool) -> App | None:
        c = t.apps.c
        state = c.state.in_(STOPPED_STATES) if stopped else c.state.not_in(STOPPED_STATES)
        newest = (c.stopped_at if stopped else c.created_at).desc()
        async with self.db.tx() as conn:
            row = (
                await conn.execute(
                    select(t.apps)
                    .where(c.environment == (environment or DEFAULT_ENVIRONMENT), c.name == name, state)
                    .order_by(newest)
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

    async def publish(self, app_id: str, name: str, state: int, tags: Mapping[str, str] = {}) -> App:
        """A deploy that names tags replaces the app's; one that names none keeps those App.set_tags() gave."""
        if state:
            _check_state(state, _PUBLISHED_STATES)
        # Only deployed apps are looked up by name; `modal run` publishes whatever App(name) was given.
        if state == api_pb2.APP_STATE_DEPLOYED and not valid_object_name(name):
            raise InvalidArgument(
                f"Invalid app name {name!r}: use letters, digits, '-', '_' and '.', at most 64 characters,"
                " and no name shaped like an app id"
            )
        app = await self.get(app_id)
        if app.state in STOPPED_STATES:
            raise InvalidArgument(f"App {app_id} is stopped")
        values: dict = {"state": state or app.state}
        if tags:
            values["tags"] = json.dumps(_checked(tags))
        if name:
            other = await self.by_name(app.environment, name)
            if other and other.app_id != app_id and state == api_pb2.APP_STATE_DEPLOYED:
                raise AlreadyExists(f"An app named '{name}' is already deployed in environment '{app.environment}'")
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

    async def mark_entrypoint_done(self, app_id: str) -> None:
        async with self.db.tx() as conn:
            await conn.execute(update(t.apps).where(t.apps.c.app_id == app_id).values(entrypoint_done_at=time.time()))

    async def in_state(self, state: int) -> list[App]:
        async with self.db.tx() as conn:
            rows = await conn.execute(select(t.apps).where(t.apps.c.state == state))
            return [_app(r) for r in rows]

    # -- environments ------------------------------------------------------

    async def environments(self) -> list[Environment]:
        async with self.db.tx() as conn:
            rows = await conn.execute(select(t.environments).order_by(t.environments.c.created_at))
            return [Environment(r.name, r.environment_id, r.created_at) for r in rows]

    async def environment_names(self, environment_ids: Collection[str]) -> list[str]:
        """The names of the environments with these ids, in their order."""
        by_id = {e.environment_id: e.name for e in await self.environments()}
        for environment_id in environment_ids:
            if environment_id not in by_id:
                raise NotFound(f"Environment {environment_id} not found")
        return [by_id[i] for i in environment_ids]

    async def create_environment(self, name: str) -> None:
        async with self.db.tx() as conn:
            await _check_new_environment(conn, name)
            await conn.execute(
                insert(t.environments).values(name=name, environment_id=new_id("en"), created_at=time.time())
            )

    async def rename_environment(self, name: str, new_name: str) -> None:
        await self.ensure_environment(name)
        async with self.db.tx() as conn:
            await _check_new_environment(conn, new_name)
            await conn.execute(update(t.environments).where(t.environments.c.name == name).values(name=new_name))
            await conn.execute(update(t.apps).where(t.apps.c.environment == name).values(environment=new_name))

    async def delete_environment(self, name: str) -> list[App]:
        """Removes the environment; returns its apps that still run, for the caller to stop."""
        if (name or DEFAULT_ENVIRONMENT) == DEFAULT_ENVIRONMENT:
            raise InvalidArgument(f"The default environment '{DEFAULT_ENVIRONMENT}' cannot be deleted")
        await self.ensure_environment(name)
        async with self.db.tx() as conn:
            await conn.execute(delete(t.environments).where(t.environments.c.name == name))
        return [a for a in await self.in_environment(name) if a.state not in STOPPED_STATES]


async def _check_new_environment(conn, name: str) -> None:
    if not _ENV_NAME.fullmatch(name or ""):
        raise InvalidArgument(
            f"Invalid environment name {name!r}: use letters, digits, '-', '_' and '.', at most 64 characters"
        )
    if (await conn.execute(select(t.environments).where(t.environments.c.name == name))).first():
        raise AlreadyExists(f"Environment '{name}' already exists")


def valid_object_name(name: str) -> bool:
    """A name the client accepts for a deployed app, a volume, ...: not one that looks like an app id."""
    return bool(_APP_NAME.fullmatch(name)) and not _APP_ID.fullmatch(name)


def _check_state(state: int, allowed: Collection[int]) -> None:
    if state not in allowed:
        names = ", ".join(api_pb2.AppState.Name(s) for s in allowed)
        shown = api_pb2.AppState.Name(state) if state in api_pb2.AppState.values() else str(state)
        raise InvalidArgument(f"An app cannot be put in state {shown} by a client here; use one of {names}")


def _checked(tags: Mapping[str, str]) -> dict[str, str]:
    for key, value in tags.items():
        for what, text in (("key", key), ("value", value)):
            if not _TAG.fullmatch(text):
                raise InvalidArgument(
                    f"Invalid tag {what} {text!r}: use letters, digits, '-', '_' and '.', at most 63 characters"
                )
    return dict(tags)


def _app(row) -> App:
    return App(
        row.app_id,
        row.environment,
        row.name,
        row.description,
        row.state,
        row.created_at,
        row.stopped_at,
        tags=json.loads(row.tags),
        entrypoint_done=row.entrypoint_done_at is not None,
    )
