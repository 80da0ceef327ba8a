"""Volumes: directories of files that containers mount and the client reads and writes.

A named volume lives in an environment under its name; an ephemeral one
(`Volume.ephemeral()`) lives while its client sends heartbeats. Each is a
directory under the control plane's home, bind-mounted read-write (or read-only)
into the containers of the functions that declare it, so a write is visible to
every container at once and commit and reload have nothing left to do. Only the
control plane's own worker can mount them (see placement.Request.volumes).
"""

import asyncio
import os
import shutil
import time
from dataclasses import dataclass

from modal_proto import api_pb2
from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from ..store import schema as t
from ..store.blobs import BlobStore
from ..store.database import Database
from . import volume_files
from .apps import DEFAULT_ENVIRONMENT, valid_object_name
from .errors import AlreadyExists, InvalidArgument, NotFound
from .ids import new_id
from .mounts import contained_path

Creation = api_pb2.ObjectCreationType
V1 = api_pb2.VOLUME_FS_VERSION_V1
# The client heartbeats an ephemeral volume every 300 s; three missed ones end it.
EPHEMERAL_TIMEOUT = 900.0


@dataclass
class Volume:
    volume_id: str
    environment: str
    name: str | None
    created_at: float

    def metadata(self) -> api_pb2.VolumeMetadata:
        return api_pb2.VolumeMetadata(
            version=V1, name=self.name or "", creation_info=api_pb2.CreationInfo(created_at=self.created_at)
        )


class Volumes:
    def __init__(self, db: Database, blobs: BlobStore, root: str):
        self.db = db
        self.blobs = blobs
        self.root = root

    def directory(self, volume_id: str) -> str:
        return os.path.join(self.root, volume_id)

    async def get_or_create(self, name: str, environment: str, creation: int, version: int) -> Volume:
        environment = environment or DEFAULT_ENVIRONMENT
        if version not in (api_pb2.VOLUME_FS_VERSION_UNSPECIFIED, V1):
            raise InvalidArgument("shoal has v1 volumes only; leave out version= (or pass version=1)")
        if creation == Creation.OBJECT_CREATION_TYPE_EPHEMERAL:
            return await self._create(environment, None, time.time())
        if not valid_object_name(name):
            raise InvalidArgument(
                f"Invalid volume name {name!r}: use letters, digits, '-', '_' and '.', at most 64 characters"
            )
        existing = await self._named(environment, name)
        if creation == Creation.OBJECT_CREATION_TYPE_UNSPECIFIED:
            if existing is None:
                raise NotFound(f"Volume '{name}' not found in environment '{environment}'")
            return existing
        if creation not in (
            Creation.OBJECT_CREATION_TYPE_CREATE_IF_MISSING,
            Creation.OBJECT_CREATION_TYPE_CREATE_FAIL_IF_EXISTS,
        ):
            raise InvalidArgument(f"Volume '{name}': object creation type {creation} is not supported")
        if existing is not None:
            if creation == Creation.OBJECT_CREATION_TYPE_CREATE_FAIL_IF_EXISTS:
                raise AlreadyExists(f"Volume '{name}' already exists in environment '{environment}'")
            return existing
        try:
            return await self._create(environment, name, None)
        except IntegrityError:  # created meanwhile by another request
            if creation == Creation.OBJECT_CREATION_TYPE_CREATE_FAIL_IF_EXISTS:
                raise AlreadyExists(f"Volume '{name}' already exists in environment '{environment}'") from None
            return await self.get_named(environment, name)

    async def _create(self, environment: str, name: str | None, heartbeat_at: float | None) -> Volume:
        volume = Volume(new_id("vo"), environment, name, time.time())
        os.makedirs(self.directory(volume.volume_id), mode=0o755)
        try:
            async with self.db.tx() as conn:
                await conn.execute(
                    insert(t.volumes).values(
                        volume_id=volume.volume_id,
                        environment=environment,
                        name=name,
                        created_at=volume.created_at,
                        heartbeat_at=heartbeat_at,
                    )
                )
        except BaseException:
            os.rmdir(self.directory(volume.volume_id))
            raise
        return volume

    async def _named(self, environment: str, name: str) -> Volume | None:
        async with self.db.tx() as conn:
            row = (
                await conn.execute(
                    select(t.volumes).where(t.volumes.c.environment == environment, t.volumes.c.name == name)
                )
            ).one_or_none()
        return _volume(row) if row else None

    async def get_named(self, environment: str, name: str) -> Volume:
        volume = await self._named(environment or DEFAULT_ENVIRONMENT, name)
        if volume is None:
            raise NotFound(f"Volume '{name}' not found in environment '{environment or DEFAULT_ENVIRONMENT}'")
        return volume

    async def get(self, volume_id: str) -> Volume:
        async with self.db.tx() as conn:
            row = (await conn.execute(select(t.volumes).where(t.volumes.c.volume_id == volume_id))).one_or_none()
        if row is None:
            raise NotFound(f"Volume {volume_id} not found")
        return _volume(row)

    async def in_environment(self, environment: str, limit: int, created_before: float) -> list[Volume]:
        """Named volumes, newest first."""
        query = (
            select(t.volumes)
            .where(t.volumes.c.environment == (environment or DEFAULT_ENVIRONMENT), t.volumes.c.name.is_not(None))
            .order_by(t.volumes.c.created_at.desc())
        )
        if created_before > 0:
            query = query.where(t.volumes.c.created_at < created_before)
        if limit > 0:
            query = query.limit(limit)
        async with self.db.tx() as conn:
            return [_volume(row) for row in await conn.execute(query)]

    async def rename(self, volume_id: str, name: str) -> None:
        volume = await self.get(volume_id)
        if volume.name is None:
            raise InvalidArgument("An ephemeral volume has no name to change")
        if not valid_object_name(name):
            raise InvalidArgument(f"Invalid volume name {name!r}")
        try:
            async with self.db.tx() as conn:
                await conn.execute(update(t.volumes).where(t.volumes.c.volume_id == volume_id).values(name=name))
        except IntegrityError:
            raise AlreadyExists(f"Volume '{name}' already exists in environment '{volume.environment}'") from None

    async def heartbeat(self, volume_id: str) -> None:
        async with self.db.tx() as conn:
            result = await conn.execute(
                update(t.volumes)
                .where(t.volumes.c.volume_id == volume_id, t.volumes.c.name.is_(None))
                .values(heartbeat_at=time.time())
            )
        if result.rowcount == 0:
            await self.get(volume_id)  # NotFound for an unknown one; a named one needs no heartbeat

    async def delete(self, volume_id: str) -> None:
        async with self.db.tx() as conn:
            deleted = await conn.execute(delete(t.volumes).where(t.volumes.c.volume_id == volume_id))
        if deleted.rowcount == 0:
            raise NotFound(f"Volume {volume_id} not found")
        await asyncio.to_thread(shutil.rmtree, self.directory(volume_id), True)

    async def delete_environment(self, environment: str) -> None:
        """An environment's volumes go with it."""
        async with self.db.tx() as conn:
            rows = await conn.execute(select(t.volumes.c.volume_id).where(t.volumes.c.environment == environment))
            ids = [row.volume_id for row in rows]
        for volume_id in ids:
            await self.delete(volume_id)

    async def expire(self, now: float) -> None:
        """Ephemeral volumes whose client stopped sending heartbeats are deleted."""
        async with self.db.tx() as conn:
            rows = await conn.execute(
                select(t.volumes.c.volume_id).where(
                    t.volumes.c.name.is_(None), t.volumes.c.heartbeat_at < now - EPHEMERAL_TIMEOUT
                )
            )
            ids = [row.volume_id for row in rows]
        for volume_id in ids:
            await self.delete(volume_id)

    # -- mounts ------------------------------------------------------------

    async def check_mounts(self, mounts: list[api_pb2.VolumeMount]) -> None:
        """Refuse a function's volume mounts that no container could get."""
        paths = set()
        for mount in mounts:
            await self.get(mount.volume_id)
            if mount.sub_path:
                raise InvalidArgument("Volume mounts with sub_path= are not supported by shoal yet")
            path = contained_path(mount.mount_path, "Volume mount")
            if path in paths:
                raise InvalidArgument(f"Two volumes are mounted at {path}")
            paths.add(path)

    async def binds(self, mounts: list[api_pb2.VolumeMount]) -> list[tuple[str, str, bool]]:
        """Each mount as (directory on this machine, path in the container, read-only)."""
        for mount in mounts:
            await self.get(mount.volume_id)  # deleted since the function was created: say so
        return [
            (self.directory(m.volume_id), contained_path(m.mount_path, "Volume mount"), m.read_only) for m in mounts
        ]

    # -- files -------------------------------------------------------------

    async def _files(self, volume_id: str, operation, *args):
        """Run a volume_files operation on the volume's directory, in a thread (it touches the disk)."""
        await self.get(volume_id)
        return await asyncio.to_thread(operation, self.directory(volume_id), *args)

    async def listing(self, volume_id: str, path: str, recursive: bool) -> list[api_pb2.FileEntry]:
        return await self._files(volume_id, volume_files.listing, path, recursive)

    async def size(self, volume_id: str, path: str) -> int:
        return await self._files(volume_id, volume_files.size, path)

    async def read(self, volume_id: str, path: str, start: int, length: int) -> bytes:
        return await self._files(volume_id, volume_files.read, path, start, length)

    async def put(self, volume_id: str, files: list[api_pb2.MountFile], overwrite: bool) -> None:
        """Files uploaded to the blob store (as mount files are), written at their paths; with
        overwrite False nothing is written when any of them exists."""
        await self.get(volume_id)
        root = self.directory(volume_id)
        absent = [f.sha256_hex for f in files if not self.blobs.has(f.sha256_hex)]
        if absent:
            raise InvalidArgument(f"Volume files were not uploaded: {', '.join(absent[:5])}")

        def put_all() -> None:
            for f in files:
                volume_files.check_writable(root, f.filename, overwrite)
            for f in files:
                volume_files.write(root, f.filename, self.blobs.path(f.sha256_hex), f.mode)

        await asyncio.to_thread(put_all)

    async def remove(self, volume_id: str, path: str, recursive: bool) -> None:
        await self._files(volume_id, volume_files.remove, path, recursive)

    async def copy(self, volume_id: str, sources: list[str], destination: str) -> None:
        await self._files(volume_id, volume_files.copy, sources, destination)

    async def commit(self, volume_id: str) -> None:
        """Writes are in place already; a commit makes them durable."""
        await self.get(volume_id)
        await asyncio.to_thread(os.sync)


def _volume(row) -> Volume:
    return Volume(row.volume_id, row.environment, row.name, row.created_at)
