"""App versions: what each publish of an app made live, and the switch between them.

A version pins, for every function of the app, the revision its calls run.
The app's live version is one number, switched in one transaction, and the
only thing call routing reads: a call resolves its revision when it starts
and keeps it, so calls already running finish on the version they began on.
"""

import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from modal_proto import api_pb2
from sqlalchemy import insert, select, update

from ..store import schema as t
from ..store.database import Database
from .errors import InvalidArgument, NotFound
from .functions import Functions, Revision
from .handles import function_metadata


@dataclass(frozen=True)
class Version:
    app_id: str
    version: int
    digest: str
    objects: dict[str, str]  # tag -> function or class id
    revisions: dict[str, str]  # function id -> revision id
    deployed_at: float
    deployed_by: str = ""
    client_version: str = ""
    tag: str = ""
    commit_info: bytes = b""
    previous_version: int | None = None
    rollback_version: int | None = None


class Deployments:
    def __init__(self, db: Database, functions: Functions):
        self.db = db
        self.functions = functions
        self._live: dict[str, Version | None] = {}
        # given the app and the revisions about to go live, before the switch
        self.before_switch: Callable[[str, dict[str, str]], Awaitable[None]] = _ignore_revisions
        # told of every switch, after it is committed
        self.on_switch: Callable[[Version], Awaitable[None]] = _ignore

    async def live(self, app_id: str) -> Version | None:
        if app_id not in self._live:
            async with self.db.tx() as conn:
                row = (
                    await conn.execute(
                        select(t.app_versions)
                        .join(t.apps, t.apps.c.app_id == t.app_versions.c.app_id)
                        .where(t.apps.c.app_id == app_id, t.app_versions.c.version == t.apps.c.live_version)
                    )
                ).one_or_none()
            self._live[app_id] = _version(row) if row else None
        return self._live[app_id]

    async def resolve(self, function_id: str) -> Revision:
        """The revision a call to `function_id` starting now runs."""
        binding = await self.functions.binding(function_id)
        if binding is not None:
            if binding.version:
                parent = await self._at_version(binding.parent_id, binding.version)
            else:
                parent = await self.resolve(binding.parent_id)
            return await self.functions.bound_revision(function_id, parent)
        live = await self.live(await self.functions.app_of(function_id))
        if live is None:  # not published yet: what the client just created
            return await self.functions.latest(function_id)
        if function_id not in live.revisions:
            raise NotFound(f"Function {function_id} is not in the live version (v{live.version}) of its app")
        return await self.functions.revision(live.revisions[function_id])

    async def _at_version(self, function_id: str, version: int) -> Revision:
        """The revision a version of its app pinned for a function."""
        pinned = (await self.get(await self.functions.app_of(function_id), version)).revisions.get(function_id)
        if pinned is None:
            raise NotFound(f"Function {function_id} is not in version v{version} of its app")
        return await self.functions.revision(pinned)

    async def app_layout(self, app_id: str) -> api_pb2.AppLayout:
        """The live version's objects, as the client hydrates them."""
        layout = api_pb2.AppLayout()
        live = await self.live(app_id)
        for tag, object_id in (live.objects if live else {}).items():
            if object_id.startswith("fu-"):
                layout.function_ids[tag] = object_id
                revision = await self.resolve(object_id)
                layout.objects.append(
                    api_pb2.Object(
                        object_id=object_id, function_handle_metadata=function_metadata(revision.definition, app_id)
                    )
                )
            elif object_id.startswith("cs-"):
                layout.class_ids[tag] = object_id
                layout.objects.append(
                    api_pb2.Object(object_id=object_id, class_handle_metadata=api_pb2.ClassHandleMetadata())
                )
        return layout

    async def publish(
        self, app_id: str, objects: dict[str, str], deployed_by: str, client_version: str, tag: str, commit_info: bytes
    ) -> Version | None:
        """Make what FunctionCreate staged live as a new version; None when nothing changed."""
        revisions = {}
        for object_id in objects.values():
            if object_id.startswith("fu-"):
                revisions[object_id] = (await self.functions.latest(object_id)).revision_id
        digest = _digest(objects, revisions)
        live = await self.live(app_id)
        if live is not None and live.digest == digest:
            return None
        return await self._switch(
            app_id, live, digest, objects, revisions, deployed_by, client_version, tag, commit_info, None
        )

    async def rollback(self, app_id: str, version: int, deployed_by: str, client_version: str) -> Version:
        """Re-deploy an older version as a new one; version -1 means the one before the live one."""
        live = await self.live(app_id)
        if live is None:
            raise InvalidArgument(f"App {app_id} has no deployed version")
        if version < 0:
            version = live.version - 1
        if version == live.version:
            raise InvalidArgument(f"v{version} is already the live version of app {app_id}")
        target = await self.get(app_id, version)
        return await self._switch(
            app_id,
            live,
            target.digest,
            target.objects,
            target.revisions,
            deployed_by,
            client_version,
            target.tag,
            target.commit_info,
            version,
        )

    async def rollover(self, app_id: str, deployed_by: str, client_version: str) -> Version:
        """A new version running the live one's code (`modal app rollover`): its containers are replaced."""
        live = await self.live(app_id)
        if live is None:
            raise InvalidArgument(f"App {app_id} has no deployed version")
        return await self._switch(
            app_id,
            live,
            live.digest,
            live.objects,
            live.revisions,
            deployed_by,
            client_version,
            live.tag,
            live.commit_info,
            None,
        )

    async def _switch(
        self,
        app_id: str,
        live: Version | None,
        digest: str,
        objects: dict[str, str],
        revisions: dict[str, str],
        deployed_by: str,
        client_version: str,
        tag: str,
        commit_info: bytes,
        rollback_version: int | None,
    ) -> Version:
        await self.before_switch(app_id, revisions)
        async with self.db.tx() as conn:
            last = (
                await conn.execute(
                    select(t.app_versions.c.version)
                    .where(t.app_versions.c.app_id == app_id)
                    .order_by(t.app_versions.c.version.desc())
                )
            ).first()
            version = Version(
                app_id,
                (last.version if last else 0) + 1,
                digest,
                objects,
                revisions,
                time.time(),
                deployed_by,
                client_version,
                tag,
                commit_info,
                live.version if live else None,
                rollback_version,
            )
            await conn.execute(
                insert(t.app_versions).values(
                    app_id=app_id,
                    version=version.version,
                    digest=digest,
                    objects=json.dumps(objects),
                    revisions=json.dumps(revisions),
                    previous_version=version.previous_version,
                    rollback_version=rollback_version,
                    deployed_at=version.deployed_at,
                    deployed_by=deployed_by,
                    client_version=client_version,
                    tag=tag,
                    commit_info=commit_info or None,
                )
            )
            await conn.execute(update(t.apps).where(t.apps.c.app_id == app_id).values(live_version=version.version))
        self._live[app_id] = version
        await self.on_switch(version)
        return version

    async def get(self, app_id: str, version: int) -> Version:
        async with self.db.tx() as conn:
            row = (
                await conn.execute(
                    select(t.app_versions).where(t.app_versions.c.app_id == app_id, t.app_versions.c.version == version)
                )
            ).one_or_none()
        if row is None:
            raise NotFound(f"App {app_id} has no version v{version}")
        return _version(row)

    async def history(self, app_id: str) -> list[Version]:
        async with self.db.tx() as conn:
            rows = await conn.execute(
                select(t.app_versions)
                .where(t.app_versions.c.app_id == app_id)
                .order_by(t.app_versions.c.version.desc())
            )
            return [_version(r) for r in rows]


def _digest(objects: dict[str, str], revisions: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps([objects, revisions], sort_keys=True).encode()).hexdigest()


def _version(row) -> Version:
    return Version(
        row.app_id,
        row.version,
        row.digest,
        json.loads(row.objects),
        json.loads(row.revisions),
        row.deployed_at,
        row.deployed_by,
        row.client_version,
        row.tag,
        row.commit_info or b"",
        row.previous_version,
        row.rollback_version,
    )


async def _ignore(version: Version) -> None:
    return None


async def _ignore_revisions(app_id: str, revisions: dict[str, str]) -> None:
    return None
