"""The embedded platform: one control plane and one local worker in one process.

This module wires the domain services together; lifecycle.py carries out
the scheduler's decisions on the workers.
"""

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field

from modal_proto import api_pb2
from modal_version import __version__ as CLIENT_VERSION

from ..images.base import BaseResolver
from ..images.builder import Builder
from ..images.store import LayerStore
from ..runtime import Runtime
from ..store.blobs import BlobStore
from ..store.database import Database
from ..worker.agent import LocalWorker, SocketServer, default_ca_bundle
from ..worker.inventory import this_machine
from .apps import DEFAULT_ENVIRONMENT, STOPPED_STATES, Apps
from .build_functions import BuildFunctions
from .calls import Calls
from .container_plans import ContainerPlans
from .containers import Containers
from .deployments import Deployments, Version
from .errors import FailedPrecondition, NotFound
from .functions import Functions, Revision, retry_policy
from .images import Images
from .lifecycle import Lifecycle
from .logs import Logs
from .mounts import Mounts
from .placement import Pool, Worker
from .scheduler import Autoscaling, Scheduler, autoscaling
from .secrets import Secrets
from .tokens import Tokens
from .webhooks import Webhooks
from .workers import Workers

log = logging.getLogger(__name__)

IMAGE_BUILDER_VERSION = "2025.06"
# A deploy waits this long at most for its new containers before it switches anyway.
PREWARM_TIMEOUT = 20.0
# An ephemeral app whose client stopped sending heartbeats is stopped after this long.
APP_HEARTBEAT_TIMEOUT = 120.0
GenericResult = api_pb2.GenericResult


@dataclass
class Settings:
    home: str
    database: str = ""  # file path (SQLite, the default) or postgresql:// URL
    server_url: str = ""  # how clients and containers reach the API over TCP
    # CA bundle containers trust: the host's by default, "" for none (SHOAL_CA_BUNDLE)
    ca_bundle: str = field(default_factory=default_ca_bundle)
    fake_gpus: str = ""  # GPUs the local worker declares, "H100:2,A10G:1"
    local_worker: bool = True  # False: containers run only on workers that join (image builds stay here)

    @property
    def blob_dir(self) -> str:
        return os.path.join(self.home, "blobs")


class Platform:
    def __init__(self, settings: Settings, serve_socket: SocketServer):
        self.settings = settings
        home = settings.home
        os.makedirs(home, exist_ok=True)
        self.db = Database(settings.database or os.path.join(home, "shoal.db"))
        self.blobs = BlobStore(settings.blob_dir)
        self.tokens = Tokens(self.db)
        self.apps = Apps(self.db)
        self.functions = Functions(self.db)
        self.deployments = Deployments(self.db, self.functions)
        self.deployments.before_switch = self._prewarm
        self.deployments.on_switch = self._switched
        self.webhooks = Webhooks(self.db)
        self.logs = Logs(self.db)
        self.containers = Containers(self.db)
        self.mounts = Mounts(self.db, self.blobs, os.path.join(home, "mounts"))
        self.secrets = Secrets(self.db)
        self.calls = Calls(self.db, lambda rid: retry_policy(self.functions.cached(rid)))
        self.runtime = Runtime(os.path.join(home, "runtime"))
        inventory = this_machine(settings.fake_gpus) if settings.local_worker else None
        nvidia_gpus = inventory.nvidia if inventory else ()
        self.worker = LocalWorker(self.runtime, home, serve_socket, settings.ca_bundle, nvidia_gpus)
        self.layers = LayerStore(os.path.join(home, "images"))
        builder = Builder(self.layers, self.worker.run_build_step, BaseResolver(self.layers))
        self.plans = ContainerPlans(home, self.apps, self.deployments, self.mounts, self.secrets)
        self.build_functions = BuildFunctions(self.worker, self.deployments.resolve, self.plans.plan)
        self.images = Images(
            self.db, self.mounts, self.secrets, builder, self.build_functions.run, IMAGE_BUILDER_VERSION
        )
        self.pool = Pool()
        self.lifecycle = Lifecycle(
            self.pool, self.calls, self.containers, self.logs, self.functions, self.images, self.layers, self.plans
        )
        self.workers = Workers(self.pool, self.lifecycle.worker_lost)
        if inventory:
            self.workers.join(Worker("local", inventory.milli_cpu, inventory.memory_mb, inventory.gpus), self.worker)
        else:
            self.pool.expect_workers()  # recovered work waits for the workers to join again
        self.scheduler = Scheduler(
            self.calls, self.functions.revision, self.lifecycle.place, self.lifecycle.launch, self.lifecycle.terminate
        )
        self.lifecycle.scheduler, self.lifecycle.workers = self.scheduler, self.workers
        self.calls.on_backlog = self.scheduler.kick
        self.last_heartbeat: dict[str, float] = {}
        self._tick: asyncio.Task | None = None

    async def start(self) -> None:
        await self.db.create_schema()
        await self.apps.ensure_environment("")
        await self.runtime.cleanup_all()
        await self.containers.close_unfinished()
        await self._recover()
        self.scheduler.start()
        self._tick = asyncio.create_task(self._watch_heartbeats())

    async def close(self) -> None:
        if self._tick:
            self._tick.cancel()
        await self.scheduler.close()
        await self.webhooks.close()
        await self.worker.close()
        await self.calls.flush()
        await self.db.close()

    async def _recover(self) -> None:
        """Pick up accepted work from before a restart, and deployed apps' warm pools."""
        await self.calls.recover()
        for revision_id in [rid for rid, q in self.calls.queues.items() if q.pending]:
            try:
                self.scheduler.add(await self.functions.revision(revision_id))
            except Exception:
                log.warning("pending inputs for unknown function revision %s", revision_id)
        for app in await self.apps.in_state(api_pb2.APP_STATE_DEPLOYED):
            live = await self.deployments.live(app.app_id)
            if live:
                await self._schedule_version(live)
        now = time.time()
        for app in await self.apps.in_state(api_pb2.APP_STATE_EPHEMERAL):
            self.last_heartbeat[app.app_id] = now

    # -- apps --------------------------------------------------------------

    def heartbeat(self, app_id: str) -> None:
        self.last_heartbeat[app_id] = time.time()

    async def stop_app(self, app_id: str) -> None:
        await self.apps.mark_stopped(app_id)
        self.last_heartbeat.pop(app_id, None)
        stopped = GenericResult(status=GenericResult.GENERIC_STATUS_TERMINATED, exception="App was stopped")
        for rid in [rid for rid, rev in self.scheduler.revisions.items() if rev.app_id == app_id]:
            self.scheduler.remove(rid)
            await self.calls.fail_queued(rid, stopped)
        for task in self.scheduler.tasks_of_app(app_id):
            await self.scheduler.kill(task, stopped.status, stopped.exception)
        self.logs.mark_done(app_id)

    async def _watch_heartbeats(self) -> None:
        while True:
            await asyncio.sleep(10)
            cutoff = time.time() - APP_HEARTBEAT_TIMEOUT
            for app_id, seen in list(self.last_heartbeat.items()):
                if seen >= cutoff:
                    continue
                if (await self.apps.get(app_id)).state == api_pb2.APP_STATE_DEPLOYED:
                    del self.last_heartbeat[app_id]  # deployed apps outlive the client that deployed them
                    continue
                log.info("app %s lost its client; stopping it", app_id)
                await self.stop_app(app_id)

    # -- versions and calls ------------------------------------------------

    async def publish(
        self,
        app_id: str,
        name: str,
        state: int,
        objects: dict[str, str],
        deployed_by: str,
        tag: str,
        commit_info: bytes,
    ) -> Version | None:
        """Make the functions the client created live; None when nothing changed since the live version."""
        app = await self.apps.publish(app_id, name, state)
        if app.state == api_pb2.APP_STATE_DEPLOYED:
            self.last_heartbeat.pop(app_id, None)
        return await self.deployments.publish(app_id, objects, deployed_by, CLIENT_VERSION, tag, commit_info)

    async def rollback(self, app_id: str, version: int, deployed_by: str) -> Version:
        app = await self.apps.get(app_id)
        if app.state != api_pb2.APP_STATE_DEPLOYED:
            raise FailedPrecondition(f"App {app_id} is not deployed")
        return await self.deployments.rollback(app_id, version, deployed_by, CLIENT_VERSION)

    async def _prewarm(self, app_id: str, revisions: dict[str, str]) -> None:
        """Rolling switch: a function with warm containers gets as many of its new revision,
        ready, before new calls go to it, so a deploy under load queues nothing."""
        live = await self.deployments.live(app_id)
        if live is None:
            return
        waits = []
        for function_id, revision_id in revisions.items():
            old = live.revisions.get(function_id)
            warm = len(self.scheduler.live_tasks(old)) if old and old != revision_id else 0
            if warm:
                revision = await self.functions.revision(revision_id)
                waits.append(self.scheduler.prewarm(revision, warm, PREWARM_TIMEOUT))
        await asyncio.gather(*waits)

    async def _switched(self, version: Version) -> None:
        """A new live version: its functions may start containers, the ones it replaced drain."""
        for function_id in version.revisions:
            self.scheduler.overrides.pop(function_id, None)  # a deploy brings back the declared settings
        await self._schedule_version(version)
        for rid, revision in list(self.scheduler.revisions.items()):
            if revision.app_id == version.app_id and await self._current_revision(revision.function_id) != rid:
                self.scheduler.retire(rid)
        app = await self.apps.get(version.app_id)
        if app.state == api_pb2.APP_STATE_DEPLOYED:
            await self.webhooks.notify(
                {
                    "event": "rollback" if version.rollback_version else "deploy",
                    "app_id": app.app_id,
                    "app_name": app.name,
                    "environment": app.environment,
                    "from_version": version.previous_version,
                    "to_version": version.version,
                    "deployed_by": version.deployed_by,
                    "deployed_at": version.deployed_at,
                }
            )

    async def _current_revision(self, function_id: str) -> str | None:
        try:
            return (await self.deployments.resolve(function_id)).revision_id
        except NotFound:
            return None  # the new version dropped the function

    async def update_autoscaler(
        self, function_id: str, settings: api_pb2.AutoscalerSettings, warm_pool_size: int
    ) -> Autoscaling:
        """Function.update_autoscaler(): the given settings replace the declared ones until the next deploy."""
        revision = await self.deployments.resolve(function_id)
        override = self.scheduler.overrides.setdefault(function_id, api_pb2.AutoscalerSettings())
        override.MergeFrom(settings)
        if warm_pool_size:
            override.min_containers = warm_pool_size
        self.scheduler.kick(revision.revision_id)
        return autoscaling(revision.definition, override)

    async def _schedule_version(self, version: Version) -> None:
        for function_id in version.revisions:
            self.scheduler.add(await self.deployments.resolve(function_id))

    async def deployed_object(self, app_name: str, environment: str, tag: str, kind: str) -> str:
        """The id under `tag` in the live version of a deployed app."""
        environment = environment or DEFAULT_ENVIRONMENT
        app = await self.apps.by_name(environment, app_name)
        live = await self.deployments.live(app.app_id) if app and app.state == api_pb2.APP_STATE_DEPLOYED else None
        if live is None:
            raise NotFound(f"App '{app_name}' is not deployed in environment '{environment}'")
        object_id = live.objects.get(tag, "")
        prefix = {"Function": "fu-", "Cls": "cs-"}[kind]  # the names the client's errors use
        if not object_id.startswith(prefix):
            if kind == "Function" and object_id.startswith("cs-"):
                raise NotFound(f"'{tag}' in app '{app_name}' is a class: look it up with modal.Cls.from_name")
            raise NotFound(f"No {kind} named '{tag}' in app '{app_name}' (environment '{environment}')")
        return object_id

    async def call_target(self, function_id: str) -> Revision:
        """The revision a call starting now runs, ready to be scheduled."""
        revision = await self.deployments.resolve(function_id)
        if revision.revision_id not in self.scheduler.revisions:
            if (await self.apps.get(revision.app_id)).state in STOPPED_STATES:
                raise FailedPrecondition(f"App {revision.app_id} is stopped; its functions cannot be called")
            self.scheduler.add(revision)
        return revision
