"""Mounts: sets of files (the app's code, local packages) placed into containers.

File contents live in the blob store by sha256; a mount is its file list, and
its id derives from that list. A mount is materialised once as a directory
tree rooted at "/", which the worker stacks on top of the image layers.
"""

import json
import os
import posixpath
import shutil
import tempfile
import time

from modal.mount import client_mount_name
from modal_proto import api_pb2
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..store import schema as t
from ..store.blobs import BlobStore
from ..store.database import Database
from .errors import InvalidArgument, NotFound
from .ids import content_id

# The client asks for its own package by name; the worker provides it for the
# image's Python version, so the mount is a marker rather than a file list.
CLIENT_MOUNT_ID = "mo-client"


class Mounts:
    def __init__(self, db: Database, blobs: BlobStore, root: str):
        self.db = db
        self.blobs = blobs
        self.root = root

    def missing(self, hashes: list[str]) -> list[str]:
        return [h for h in hashes if not self.blobs.has(h)]

    def put_file(self, sha256_hex: str, data: bytes) -> None:
        try:
            self.blobs.put_verified(sha256_hex, data)
        except ValueError as e:
            raise InvalidArgument(str(e)) from None

    async def lookup(self, name: str) -> str:
        if name == client_mount_name():
            return CLIENT_MOUNT_ID
        async with self.db.tx() as conn:
            row = (await conn.execute(select(t.mounts).where(t.mounts.c.name == name))).first()
        if row is None:
            raise NotFound(f"Mount '{name}' not found")
        return row.mount_id

    async def create(self, files: list[api_pb2.MountFile], name: str = "") -> str:
        entries = sorted([contained_path(f.filename, "Mount file"), f.sha256_hex, f.mode] for f in files)
        absent = self.missing([sha for _, sha, _ in entries])
        if absent:
            raise InvalidArgument(f"Mount files were not uploaded: {', '.join(absent[:5])}")
        listing = json.dumps(entries)
        mount_id = content_id("mo", listing.encode())
        try:
            async with self.db.tx() as conn:
                await conn.execute(
                    t.mounts.insert().values(
                        mount_id=mount_id, name=name or None, files=listing, created_at=time.time()
                    )
                )
        except IntegrityError:
            pass  # the same files were mounted before: same id
        return mount_id

    async def files(self, mount_id: str) -> list[tuple[str, str, int]]:
        async with self.db.tx() as conn:
            row = (await conn.execute(select(t.mounts).where(t.mounts.c.mount_id == mount_id))).one_or_none()
        if row is None:
            raise NotFound(f"Mount {mount_id} not found")
        return [tuple(e) for e in json.loads(row.files)]

    async def materialise(self, mount_id: str) -> str:
        """The mount as a directory tree rooted at "/" (files copied out of the blob store)."""
        target = os.path.join(self.root, mount_id)
        if os.path.isdir(target):
            return target
        files = await self.files(mount_id)
        os.makedirs(self.root, exist_ok=True)
        tmp = tempfile.mkdtemp(dir=self.root, prefix=".tmp-")
        for path, sha, mode in files:
            dest = os.path.join(tmp, path.lstrip("/"))
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.copyfile(self.blobs.path(sha), dest)
            os.chmod(dest, (mode & 0o777) or 0o644)  # no set-id bits from a client on the host
        try:
            os.rename(tmp, target)
        except OSError:  # another caller materialised it first
            shutil.rmtree(tmp, ignore_errors=True)
        return target


def contained_path(name: str, what: str) -> str:
    """A file path a client sent, as an absolute path that stays below the root it is placed under."""
    parts = name.split("/")
    if not name.strip("/") or "\0" in name or ".." in parts:
        raise InvalidArgument(f"{what} path {name!r} must name a file, with no '..' in it")
    return posixpath.normpath("/" + name.lstrip("/"))
