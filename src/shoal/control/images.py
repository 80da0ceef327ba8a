"""Images: the client's image definitions, built once and identified by content.

An image id is a hash of its definition (commands, base image ids, context
files, build args), so the same definition is the same image and is never
rebuilt unless the client forces it (or its layers are gone). Images no live
app refers to are garbage: `collect` removes them with their layers and files
(the python bases built from Debian packages excepted: `bootstrap` made them for
hosts that cannot download them again).
"""

import asyncio
import copy
import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from modal_proto import api_pb2
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ..images.bootstrap import bootstrap_layer_ids, bootstrap_python_base, bootstrap_refs
from ..images.builder import Builder, BuildError, Log
from ..images.imported import import_rootfs, imported_layer_ids
from ..images.registry import RegistryAuth
from ..images.spec import BuiltImage
from ..images.store import Collected
from ..store import schema as t
from ..store.database import Database
from .apps import STOPPED_STATES
from .errors import FailedPrecondition, InvalidArgument, NotFound
from .ids import content_id
from .mounts import Mounts, contained_path
from .pulse import Pulse
from .secrets import Secrets
from .volumes import Volumes

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


# run(function_id, input, image, image_dirs, upper_dir, log): an Image.run_function step (see build_functions)
RunBuildFunction = Callable[
    [str, api_pb2.FunctionInput | None, BuiltImage, list[str], str, Callable[[str], None]], Awaitable[None]
]


# writes a new layer into a directory, given the dirs of the layers below it
Fill = Callable[[str, list[str]], Awaitable[None]]


class Images:
    def __init__(
        self,
        db: Database,
        mounts: Mounts,
        secrets: Secrets,
        volumes: Volumes,
        builder: Builder,
        run_build_function: RunBuildFunction,
        builder_version: str,
    ):
        self.db = db
        self.mounts = mounts
        self.secrets = secrets
        self.volumes = volumes
        self.builder = builder
        self.run_build_function = run_build_function
        self.layers = builder.store
        self.builder_version = builder_version
        self.jobs: dict[str, BuildJob] = {}
        self._built: dict[str, BuiltImage] = {}

    async def get_or_create(
        self, image: api_pb2.Image, force_build: bool, app_id: str = "", build_function_id: str = ""
    ) -> tuple[str, api_pb2.GenericResult | None]:
        """Returns the image id, and its result when no build is needed."""
        _check_supported(image, build_function_id)
        await self.volumes.check_mounts(list(image.volume_mounts))
        definition = image.SerializeToString(deterministic=True)
        image_id = content_id("im", self.builder_version.encode() + definition)
        for base in image.base_images:
            await self.built(base.image_id)  # an unknown base is the caller's error, before any build starts
        if app_id:
            await self._used_by(image_id, app_id)
        # No await from here until the job is registered: two clients asking for the same
        # image at once must find one build, the second one joining the first one's log.
        job = self.jobs.get(image_id)
        if job and job.result is None:
            return image_id, None
        job = self.jobs[image_id] = BuildJob(image_id)
        try:
            ready = await self._ready_or_pending(image_id, definition, force_build)
        except BaseException:
            del self.jobs[image_id]
            raise
        if ready:
            del self.jobs[image_id]
            return image_id, GenericResult(status=GenericResult.GENERIC_STATUS_SUCCESS)
        job.task = asyncio.create_task(self._build(job, image, force_build, build_function_id))
        return image_id, None

    async def _ready_or_pending(self, image_id: str, definition: bytes, force_build: bool) -> bool:
        """True when the image is built and usable; else it is recorded as pending."""
        async with self.db.tx() as conn:
            row = (await conn.execute(select(t.images).where(t.images.c.image_id == image_id))).one_or_none()
            if row and row.status == "ready" and not force_build and self._layers_present(row.built):
                return True
            if row is None:
                await conn.execute(
                    insert(t.images).values(
                        image_id=image_id, definition=definition, status="pending", created_at=time.time()
                    )
                )
        return False

    def _layers_present(self, built: str) -> bool:
        """A ready image whose layers were removed behind shoal's back (or by an older store) is built again."""
        return all(self.layers.has(layer) for layer in BuiltImage.from_json(built).layers)

    async def _used_by(self, image_id: str, app_id: str) -> None:
        async with self.db.tx() as conn:
            used = t.image_uses.c
            seen = await conn.execute(select(used.app_id).where(used.image_id == image_id, used.app_id == app_id))
            if seen.one_or_none() is None:
                await conn.execute(insert(t.image_uses).values(image_id=image_id, app_id=app_id))

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

    async def _build(self, job: BuildJob, image: api_pb2.Image, force_build: bool, build_function_id: str) -> None:
        context_dir = tempfile.mkdtemp(prefix="shoal-context-")
        try:
            # The lease keeps every layer this build makes or uses until the image is recorded as ready.
            async with self.layers.lease():
                bases = {b.docker_tag: await self.built(b.image_id) for b in image.base_images}
                if image.HasField("build_function"):
                    built = await self._run_function(image, build_function_id, bases, force_build, job.log)
                else:
                    context = await self._context(image, context_dir)
                    built = await self.builder.build(
                        list(image.dockerfile_commands),
                        bases=bases,
                        context=context,
                        build_args=dict(image.build_args),
                        secret_env=await self.secrets.env(list(image.secret_ids)),
                        secret_ids=list(image.secret_ids),
                        registry_auth=await self._registry_auth(image.image_registry_config),
                        volumes=await self.volumes.binds(list(image.volume_mounts)),
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

    async def _registry_auth(self, config: api_pb2.ImageRegistryConfig) -> RegistryAuth | None:
        """The login `from_registry(secret=...)` gives: the secret's REGISTRY_USERNAME and REGISTRY_PASSWORD."""
        if not config.secret_id:
            return None
        env = await self.secrets.env([config.secret_id])
        if "REGISTRY_USERNAME" not in env or "REGISTRY_PASSWORD" not in env:
            raise BuildError("FROM", reason="failed: the registry secret needs REGISTRY_USERNAME and REGISTRY_PASSWORD")
        return RegistryAuth(env["REGISTRY_USERNAME"], env["REGISTRY_PASSWORD"])

    async def _run_function(
        self, image: api_pb2.Image, function_id: str, bases: dict[str, BuiltImage], force_build: bool, log: Log
    ) -> BuiltImage:
        (base,) = bases.values()  # the client sends a build function with exactly one base image
        fn = image.build_function
        inputs = {
            "definition": fn.definition,
            "globals": hashlib.sha256(fn.globals).hexdigest(),
            "input": hashlib.sha256(fn.input.SerializeToString(deterministic=True)).hexdigest(),
            "secrets": sorted(image.secret_ids),
        }
        fn_input = fn.input if fn.HasField("input") else None

        async def run(image_dirs: list[str], upper: str) -> None:
            await self.run_build_function(function_id, fn_input, base, image_dirs, upper, log)

        return await self.builder.run_function(base, inputs, run, force_build=force_build, log=log)

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
            name = contained_path(f.filename, "Image context file").lstrip("/")
            path = os.path.join(context_dir, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as out:
                out.write(f.data)
            context[name] = path
        if image.context_mount_id:
            for filename, sha, _mode in await self.mounts.files(image.context_mount_id):
                context[filename.lstrip("/")] = self.mounts.blobs.path(sha)
        return context

    async def snapshot(self, base_image_id: str, app_id: str, fill: Fill, label: str) -> str:
        """A new image: `base_image_id` and one more layer that `fill(dir, base_layer_dirs)` writes
        (a sandbox's changes to its file system). It is kept while the app lives, as images the
        app asked for are."""
        base = await self.built(base_image_id)
        layer_id = os.urandom(32).hex()  # each snapshot is new
        async with self.layers.lease():
            if not await self.layers.use(base.layers):
                raise FailedPrecondition(f"Image {base_image_id}'s layers were garbage collected")
            async with self.layers.building(layer_id) as upper:
                await fill(upper, [self.layers.layer_dir(layer) for layer in base.layers])
            built = BuiltImage([*base.layers, layer_id], copy.deepcopy(base.config))
            definition = api_pb2.Image(
                base_images=[api_pb2.BaseImage(image_id=base_image_id, docker_tag="base")],
                dockerfile_commands=["FROM base", f"# {label}"],
            )
            image_id = content_id("im", layer_id.encode())
            async with self.db.tx() as conn:
                await conn.execute(
                    insert(t.images).values(
                        image_id=image_id,
                        definition=definition.SerializeToString(),
                        status="ready",
                        built=built.to_json(),
                        created_at=time.time(),
                    )
                )
            await self._used_by(image_id, app_id)
        self._built[image_id] = built
        return image_id

    async def import_rootfs(self, name: str, source: str, python: str | None) -> BuiltImage:
        """Make the root file system at `source` on this machine the base image `name` (imported.py)."""
        return await import_rootfs(self.layers, name, source, python)

    async def bootstrap(self, log: Log) -> list[tuple[str, BuiltImage]]:
        """Build the python base images Debian's packages provide, so that `FROM` them works offline."""
        built = []
        async with self.layers.lease():
            for ref in bootstrap_refs():
                built.append((ref, await bootstrap_python_base(self.layers, ref, log)))
        return built

    # -- garbage collection ------------------------------------------------------------

    async def collect(self) -> Collected:
        """Remove images no live app refers to, then layers no image keeps and files no layer names."""

        async def live_layers() -> set[str]:
            building = {image_id for image_id, job in self.jobs.items() if job.result is None}
            async with self.db.tx() as conn:
                keep = await referenced_image_ids(conn) | building
                rows = (await conn.execute(select(t.images.c.image_id, t.images.c.built))).all()
                doomed = [row.image_id for row in rows if row.image_id not in keep]
                if doomed:
                    await conn.execute(delete(t.images).where(t.images.c.image_id.in_(doomed)))
                stopped = select(t.apps.c.app_id).where(t.apps.c.state.in_(STOPPED_STATES))
                await conn.execute(delete(t.image_uses).where(t.image_uses.c.app_id.in_(stopped)))
            for image_id in doomed:
                self._built.pop(image_id, None)
                if image_id in self.jobs:
                    del self.jobs[image_id]
            kept = [BuiltImage.from_json(row.built) for row in rows if row.image_id in keep and row.built]
            local = await asyncio.to_thread(lambda: bootstrap_layer_ids() | imported_layer_ids(self.layers))
            return {layer for image in kept for layer in image.layers} | local

        collected = await self.layers.collect(live_layers)
        log.info("image gc: removed %d layers, %d files (%d bytes)", collected.layers, collected.files, collected.bytes)
        return collected


def _check_supported(image: api_pb2.Image, build_function_id: str) -> None:
    """Refuse what the builder cannot do, rather than build an image that is not what was asked for."""
    for f in image.context_files:
        contained_path(f.filename, "Image context file")
    if image.image_registry_config.registry_auth_type in (
        api_pb2.REGISTRY_AUTH_TYPE_AWS,
        api_pb2.REGISTRY_AUTH_TYPE_GCP,
    ):
        raise InvalidArgument(
            "Images from AWS ECR or GCP Artifact Registry (from_aws_ecr, from_gcp_artifact_registry) are not "
            "supported by shoal yet; registries with a username and password (from_registry(secret=...)) are"
        )
    if image.HasField("build_function") and not build_function_id:
        raise InvalidArgument("run_function: the image has a build function but no build_function_id")
    if image.HasField("build_function") and len(image.base_images) != 1:
        raise InvalidArgument("run_function needs exactly one base image")


async def referenced_image_ids(conn: AsyncConnection) -> set[str]:
    """The images garbage collection keeps: those that any version of a live (not stopped) app
    runs on or that a live app asked for, and the base images they were built from."""
    live_apps = select(t.apps.c.app_id).where(t.apps.c.state.not_in(STOPPED_STATES))
    # every revision of a live app, not only the live ones: a rollback may bring any back
    definitions = await conn.execute(select(t.revisions.c.definition).where(t.revisions.c.app_id.in_(live_apps)))
    found = {api_pb2.Function.FromString(row.definition).image_id for row in definitions}
    uses = await conn.execute(select(t.image_uses.c.image_id).where(t.image_uses.c.app_id.in_(live_apps)))
    found |= {row.image_id for row in uses}
    found.discard("")
    todo = set(found)
    while todo:
        rows = await conn.execute(select(t.images.c.definition).where(t.images.c.image_id.in_(todo)))
        bases = {b.image_id for row in rows for b in api_pb2.Image.FromString(row.definition).base_images}
        todo = bases - found
        found |= bases
    return found
