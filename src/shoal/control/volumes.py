"""Volumes: directories of files that containers mount and the client reads and writes.

Named and ephemeral ones follow named_objects.py. Each is a directory under the
control plane's home, bind-mounted read-write (or read-only) into the containers
of the functions that declare it (whole, or its sub_path= directory alone), so a
write is visible to every container at once and commit and reload have nothing
left to do. Only workers that see these directories mount them: the control
plane's own, and joined workers started with `--volumes` on a file system they
share with it (see placement.Request.volumes).
"""

import asyncio
import os
import shutil

from modal_proto import api_pb2

from ..store import schema as t
from ..store.blobs import BlobStore
from ..store.database import Database
from . import volume_files
from .errors import InvalidArgument
from .mounts import contained_path
from .named_objects import NamedObject, NamedObjects

V1 = api_pb2.VOLUME_FS_VERSION_V1


def metadata(volume: NamedObject) -> api_pb2.VolumeMetadata:
    return api_pb2.VolumeMetadata(version=V1, name=volume.name or "", creation_info=volume.creation_info())


def sub_path(mount: api_pb2.VolumeMount) -> str:
    """The directory of the volume that the mount shows, relative to its root ("": all of it)."""
    if ".." in mount.sub_path.split("/"):
        raise InvalidArgument(f"Volume mount sub_path {mount.sub_path!r} must stay inside the volume (no '..')")
    return "/".join(volume_files.parts(mount.sub_path))


class Volumes:
    def __init__(self, db: Database, blobs: BlobStore, root: str):
        self.objects = NamedObjects(db, t.volumes, "Volume", "vo")
        self.blobs = blobs
        self.root = root  # there from the start: joined workers with --volumes share it
        os.makedirs(root, exist_ok=True)

    def directory(self, volume_id: str) -> str:
        return os.path.join(self.root, volume_id)

    async def get_or_create(self, name: str, environment: str, creation: int, version: int) -> NamedObject:
        if version not in (api_pb2.VOLUME_FS_VERSION_UNSPECIFIED, V1):
            raise InvalidArgument("shoal has v1 volumes only; leave out version= (or pass version=1)")
        volume, _ = await self.objects.get_or_create(name, environment, creation)
        return volume

    async def _root(self, volume_id: str) -> str:
        """The volume's directory, made at its first use (NotFound for an unknown volume)."""
        await self.objects.get(volume_id)
        root = self.directory(volume_id)
        os.makedirs(root, mode=0o755, exist_ok=True)
        return root

    async def delete(self, volume_id: str) -> None:
        await self.objects.delete(volume_id)
        await asyncio.to_thread(shutil.rmtree, self.directory(volume_id), True)

    # -- mounts ------------------------------------------------------------

    async def check_mounts(self, mounts: list[api_pb2.VolumeMount]) -> None:
        """Refuse a function's volume mounts that no container could get."""
        paths = set()
        for mount in mounts:
            await self.objects.get(mount.volume_id)
            sub_path(mount)
            path = contained_path(mount.mount_path, "Volume mount")
            if path in paths:
                raise InvalidArgument(f"Two volumes are mounted at {path}")
            paths.add(path)

    async def binds(self, mounts: list[api_pb2.VolumeMount]) -> list[tuple[str, str, str, bool]]:
        """Each mount as (volume id, its sub path, path in the container, read-only); a worker finds
        the volume's directory under its own view of this root, and makes the sub path there."""
        for mount in mounts:
            await self._root(mount.volume_id)  # deleted since the function was created: say so
        return [(m.volume_id, sub_path(m), contained_path(m.mount_path, "Volume mount"), m.read_only) for m in mounts]

    # -- files -------------------------------------------------------------

    async def _files(self, volume_id: str, operation, *args):
        """Run a volume_files operation on the volume's directory, in a thread (it touches the disk)."""
        return await asyncio.to_thread(operation, await self._root(volume_id), *args)

    async def listing(self, volume_id: str, path: str, recursive: bool) -> list[api_pb2.FileEntry]:
        return await self._files(volume_id, volume_files.listing, path, recursive)

    async def size(self, volume_id: str, path: str) -> int:
        return await self._files(volume_id, volume_files.size, path)

    async def read(self, volume_id: str, path: str, start: int, length: int) -> bytes:
        return await self._files(volume_id, volume_files.read, path, start, length)

    async def put(self, volume_id: str, files: list[api_pb2.MountFile], overwrite: bool) -> None:
        """Files uploaded to the blob store (as mount files are), written at their paths; with
        overwrite False nothing is written when any of them exists."""
        absent = [f.sha256_hex for f in files if not self.blobs.has(f.sha256_hex)]
        if absent:
            raise InvalidArgument(f"Volume files were not uploaded: {', '.join(absent[:5])}")

        def put_all(root: str) -> None:
            for f in files:
                volume_files.check_writable(root, f.filename, overwrite)
            for f in files:
                volume_files.write(root, f.filename, self.blobs.path(f.sha256_hex), f.mode)

        await self._files(volume_id, put_all)

    async def remove(self, volume_id: str, path: str, recursive: bool) -> None:
        await self._files(volume_id, volume_files.remove, path, recursive)

    async def copy(self, volume_id: str, sources: list[str], destination: str) -> None:
        await self._files(volume_id, volume_files.copy, sources, destination)

    async def commit(self, volume_id: str) -> None:
        """Writes are in place already; a commit makes them durable."""
        await self.objects.get(volume_id)
        await asyncio.to_thread(os.sync)
