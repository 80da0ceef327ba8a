"""Images: the client's image definitions, built once and identified by content.

An image id is a hash of its definition (commands, base image ids, context
files, build args), so the same definition is the same image and is never
rebuilt unless the client forces it.
"""

import asyncio
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field

from modal_proto import api_pb2
from sqlalchemy import insert, select, update

from ..images.builder import Builder, BuildError
from ..images.spec import BuiltImage
from ..store import schema as t
from ..store.database import Database
from .errors import NotFound
from .ids import content_id
from .mounts import Mounts
from .pulse import Pulse

log = logging.getLogger(__name__)

GenericResult = api_pb2.GenericResult


@dataclass
class BuildJob:
    image_id: str
    lines: list[str] = field(default_factory=list)
    result: api_pb2.GenericResult | None = None
    pulse: Pulse = field(default_factory=Pulse)
    task: asyncio.Task | None = None  # the build, referenced so it is not collected mid-way

    def log(self, text: str) -> None:
        self.lines.append(text)
        self.pulse.notify()


class Images:
    def __init__(self, db: Database, mounts: Mounts, builder: Builder, builder_version: str):
        self.db = db
        self.mounts = mounts
        self.builder = builder
        self.builder_version = builder_version
        self.jobs: dict[str, BuildJob] = {}
        self._built: dict[str, BuiltImage] = {}

    async def get_or_create(self, image: api_pb2.Image, force_build: bool) -> tuple[str, api_pb2.GenericResult | None]:
        """Returns the image id, and its result when no build is needed."""
        definition = image.SerializeToString(deterministic=True)
        image_id = content_id("im", self.builder_version.encode() + definition)
        job = self.jobs.get(image_id)
        if job and job.result is None:
            return image_id, None  # a build is under way: join it
        async with self.db.tx() as conn:
            row = (await conn.execute(select(t.images).where(t.images.c.image_id == image_id))).one_or_none()
            if row and row.status == "ready" and not force_build:
                return image_id, GenericResult(status=GenericResult.GENERIC_STATUS_SUCCESS)
            if row is None:
                await conn.execute(
                    insert(t.images).values(
                        image_id=image_id, definition=definition, status="pending", created_at=time.time()
                    )
                )
        job = self.jobs[image_id] = BuildJob(image_id)
        job.task = asyncio.create_task(self._build(job, image, force_build))
        return image_id, None

    async def join(
        self, image_id: str, after: int, timeout: float
    ) -> tuple[list[str], int, api_pb2.GenericResult | None]:
        """Build log lines after position `after`, and the result once the build ended."""
        job = self.jobs.get(image_id)
        if job is None:
            status = await self._status(image_id)
            ok = status == "ready"
            return (
                [],
                after,
                GenericResult(
                    status=GenericResult.GENERIC_STATUS_SUCCESS if ok else GenericResult.GENERIC_STATUS_FAILURE,
                    exception="" if ok else f"Image {image_id} is not built; rebuild it by running the app again",
                ),
            )
        if len(job.lines) <= after and job.result is None:
            await job.pulse.wait(timeout)
        return job.lines[after:], len(job.lines), job.result

    async def built(self, image_id: str) -> BuiltImage:
        if image_id in self._built:
            return self._built[image_id]
        async with self.db.tx() as conn:
            row = (await conn.execute(select(t.images).where(t.images.c.image_id == image_id))).one_or_none()
        if row is None:
            raise NotFound(f"Image {image_id} not found")
        if row.status != "ready":
            raise NotFound(f"Image {image_id} has not been built")
        built = self._built[image_id] = BuiltImage.from_json(row.built)
        return built

    async def metadata(self, image_id: str) -> api_pb2.ImageMetadata:
        built = await self.built(image_id)
        return api_pb2.ImageMetadata(
            python_version_info=built.config.python_version or "",
            workdir=built.config.workdir,
            image_builder_version=self.builder_version,
        )

    async def _status(self, image_id: str) -> str:
        async with self.db.tx() as conn:
            row = (await conn.execute(select(t.images.c.status).where(t.images.c.image_id == image_id))).one_or_none()
        if row is None:
            raise NotFound(f"Image {image_id} not found")
        return row.status

    async def _build(self, job: BuildJob, image: api_pb2.Image, force_build: bool) -> None:
        context_dir = tempfile.mkdtemp(prefix="shoal-context-")
        try:
            bases = {b.docker_tag: await self.built(b.image_id) for b in image.base_images}
            context = await self._context(image, context_dir)
            built = await self.builder.build(
                list(image.dockerfile_commands),
                bases=bases,
                context=context,
                build_args=dict(image.build_args),
                force_build=force_build,
                log=job.log,
            )
            self._built[job.image_id] = built
            await self._set(job.image_id, status="ready", built=built.to_json(), error=None)
            job.result = GenericResult(status=GenericResult.GENERIC_STATUS_SUCCESS)
        except BuildError as e:
            await self._fail(job, str(e))
        except Exception as e:
            log.exception("image build %s failed", job.image_id)
            await self._fail(job, f"{type(e).__name__}: {e}")
        finally:
            shutil.rmtree(context_dir, ignore_errors=True)
            job.pulse.notify()

    async def _fail(self, job: BuildJob, message: str) -> None:
        await self._set(job.image_id, status="failed", error=message)
        job.log(message + "\n")
        job.result = GenericResult(status=GenericResult.GENERIC_STATUS_FAILURE, exception=message)

    async def _set(self, image_id: str, **values) -> None:
        async with self.db.tx() as conn:
            await conn.execute(update(t.images).where(t.images.c.image_id == image_id).values(**values))

    async def _context(self, image: api_pb2.Image, context_dir: str) -> dict[str, str]:
        """COPY sources: the image's inline context files and its context mount."""
        context: dict[str, str] = {}
        for f in image.context_files:
            path = os.path.join(context_dir, f.filename.lstrip("/"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as out:
                out.write(f.data)
            context[f.filename.lstrip("/")] = path
        if image.context_mount_id:
            for filename, sha, _mode in await self.mounts.files(image.context_mount_id):
                context[filename.lstrip("/")] = self.mounts.blobs.path(sha)
        return context
