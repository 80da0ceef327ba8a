"""The embedded platform: one control plane and one local worker in one process.

This module wires the domain services together; releases.py drives deploys
and lifecycle.py carries out the scheduler's decisions on the workers.
"""

import asyncio
import logging
import os
import pickle
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from modal_proto import api_pb2

from ..images.base import BaseResolver
from ..images.builder import Builder
from ..images.layers import LayerView
from ..images.snapshot import drop_runtime_files
from ..images.store import LayerStore
from ..runtime import Command, ContainerError, Runtime
from ..store.blobs import BlobStore
from ..store.database import Database
from ..worker.agent import FS_TOOLS, MOUNT_POINTS, ExecOptions, Load, LocalWorker, SocketServer, default_ca_bundle
from ..worker.inventory import this_machine
from ..worker.protocol import HEARTBEAT_INTERVAL
from .apps import Apps
from .build_functions import BuildFunctions
from .call_history import CallHistory
from .calls import Calls
from .clusters import Clusters
from .connect_tokens import ConnectTokens
from .container_plans import ContainerPlans
from .containers import Containers
from .deployments import Deployments
from .dicts import Dicts
from .errors import FailedPrecondition, NotFound
from .execs import Execs
from .functions import Functions, retry_policy
from .images import Images
from .lifecycle import Lifecycle
from .logs import Logs
from .metrics import Metrics
from .mounts import Mounts
from .placement import Pool, Worker
from .queues import Queues
from .releases import Releases
from .sandboxes import Sandboxes
from .scheduler import Scheduler, Task
from .schedules import Schedules
from .secrets import Secrets
from .servers import Servers
from .tokens import Tokens
from .tunnels import Tunnels
from .usage import PRICES_FILE, Prices
from .volumes import Volumes
from .web_endpoints import WebEndpoints, endpoints_of
from .web_requests import WebRequests
from .webhooks import Webhooks
from .workers import Workers

log = logging.getLogger(__name__)

IMAGE_BUILDER_VERSION = "2025.06"
LOCAL = "local"  # the embedded worker's name in the pool
# An ephemeral app whose client stopped sending heartbeats is stopped after this long.
APP_HEARTBEAT_TIMEOUT = 120.0
DETACHED_POLL = 0.5  # how often a finishing detached app looks for calls still running
GenericResult = api_pb2.GenericResult
NO_ARGUMENTS = pickle.dumps(((), {}))  # (args, kwargs), as the client serializes a call's arguments
REQUEST_LOST = GenericResult(
    status=GenericResult.GENERIC_STATUS_TERMINATED, exception="shoal restarted while the web request was in flight"
)


@dataclass
class Settings:
    home: str
    database: str = ""  # file path (SQLite, the default) or postgresql:// URL
    server_url: str = ""  # how clients and containers reach the API over TCP
    # CA bundle containers trust: the host's by default, "" for none (SHOAL_CA_BUNDLE)
    ca_bundle: str = field(default_factory=default_ca_bundle)
    fake_gpus: str = ""  # GPUs the local worker declares, "H100:2,A10G:1"
    local_worker: bool = True  # False: containers run only on workers that join (image builds stay here)
    # Web endpoints are served at http://LABEL.web_domain:PORT: a domain whose subdomains all reach
    # this machine (*.localhost does, for browsers and curl here; elsewhere, a wildcard DNS record).
    web_domain: str = "localhost"
    web_url: str = "http://{label}.localhost"  # set by the server: the pattern with its port
    router_url: str = ""  # set by the server: where clients reach the command router (HTTPS)
    loopback_router_url: str = ""  # and where clients on this machine's loopback reach it (HTTP), if they can
    router_ca: str = ""  # set by the server: the PEM of the CA that signed the router's certificate

    @property
    def blob_dir(self) -> str:
        return os.path.join(self.home, "blobs")


class Platform:
    def __init__(self, settings: Settings, serve_socket: SocketServer, secret: bytes):
        self.settings = settings
        home = settings.home
        os.makedirs(home, exist_ok=True)
        self.db = Database(settings.database or os.path.join(home, "shoal.db"))
        self.blobs = BlobStore(settings.blob_dir)
        self.tokens = Tokens(self.db)
        self.apps = Apps(self.db)
        self.functions = Functions(self.db)
        self.deployments = Deployments(self.db, self.functions)
        self.webhooks = Webhooks(self.db)
        self.logs = Logs(self.db)
        self.containers = Containers(self.db)
        self.mounts = Mounts(self.db, self.blobs, os.path.join(home, "mounts"))
        self.secrets = Secrets(self.db)
        self.volumes = Volumes(self.db, self.blobs, os.path.join(home, "volumes"))
        self.dicts = Dicts(self.db)
        self.queues = Queues(self.db)
        self.calls = Calls(self.db, lambda rid: retry_policy(self.functions.cached(rid)))
        self.runtime = Runtime(os.path.join(home, "runtime"))
        inventory = this_machine(settings.fake_gpus) if settings.local_worker else None
        nvidia_gpus = inventory.nvidia if inventory else ()
        self.worker = LocalWorker(
            self.runtime, home, serve_socket, settings.ca_bundle, nvidia_gpus, volumes_root=self.volumes.root
        )
        self.layers = LayerStore(os.path.join(home, "images"))
        builder = Builder(self.layers, self.worker.run_build_step, BaseResolver(self.layers))
        self.plans = ContainerPlans(home, self.apps, self.deployments, self.mounts, self.secrets, self.volumes)
        self.build_functions = BuildFunctions(self.worker, self.deployments.resolve, self.plans.plan)
        self.images = Images(
            self.db, self.mounts, self.secrets, self.volumes, builder, self.build_functions.run, IMAGE_BUILDER_VERSION
        )
        self.pool = Pool()
        self.lifecycle = Lifecycle(
            self.pool, self.calls, self.containers, self.logs, self.functions, self.images, self.layers, self.plans
        )
        own_host = urlsplit(settings.server_url).hostname or "127.0.0.1"
        self.workers = Workers(self.pool, self.lifecycle.worker_lost, own_host)
        if inventory:
            self.workers.join(
                Worker(LOCAL, inventory.milli_cpu, inventory.memory_mb, inventory.gpus, volumes=True), self.worker
            )
        else:
            self.pool.expect_workers()  # recovered work waits for the workers to join again
        self.scheduler = Scheduler(
            self.calls,
            self.functions.revision,
            self.lifecycle.place,
            self.lifecycle.launch,
            self.lifecycle.terminate,
            self.pool.cpu_bound,
        )
        self.lifecycle.scheduler, self.lifecycle.workers = self.scheduler, self.workers
        self.clusters = Clusters(self.calls, self.scheduler)
        self.tunnels = self.lifecycle.tunnels = Tunnels(self.workers)
        self.servers = self.lifecycle.servers = Servers(self.scheduler, self.workers)
        self.scheduler.server_load = self.servers.load
        self.call_history = CallHistory(self.db, self.calls, self.scheduler.tasks)
        self.metrics = Metrics(self.db, self.call_history)
        self.calls.on_backlog = self.scheduler.kick
        self.schedules = Schedules(self._fire_schedule)
        self.releases = Releases(
            self.apps,
            self.deployments,
            self.functions,
            self.scheduler,
            self.schedules,
            self.webhooks,
            self._forget_client,
        )
        self.execs = Execs(secret, self.run_in)
        self.sandboxes = Sandboxes(
            self.db,
            self.apps,
            self.secrets,
            self.pool,
            self.workers,
            self.tunnels,
            self.scheduler,
            self.lifecycle,
            self.run_in,
            self.execs.busy,
            self.snapshot_container,
        )
        self.web_endpoints = WebEndpoints(self.db, self.apps, lambda label: settings.web_url.format(label=label))
        self.connect_tokens = ConnectTokens(
            secret, self.sandboxes.running, self.sandboxes.inbound, lambda label: settings.web_url.format(label=label)
        )
        self.web_requests = WebRequests(
            self.web_endpoints, self.calls, self.blobs, self.tokens, self.releases.call_target, self.cancel_call
        )
        self.deployments.before_switch = self.releases.prewarm
        self.deployments.on_switch = self.releases.switched
        self.last_heartbeat: dict[str, float] = {}
        self._tick: asyncio.Task | None = None
        self._local_load: asyncio.Task | None = None
        self._forget: asyncio.Task | None = None
        self._finishing: dict[str, asyncio.Task] = {}  # detached app id -> its wait for its calls to finish

    async def start(self) -> None:
        await self.db.create_schema()
        await self.apps.ensure_environment("")
        await self.worker.clear_leftovers()
        await self.containers.close_unfinished()
        await self.sandboxes.close_unfinished()
        await self._recover()
        self.scheduler.start()
        self.schedules.start()
        self._tick = asyncio.create_task(self._watch_heartbeats())
        self._forget = asyncio.create_task(self._forget_samples())
        if LOCAL in self.pool.workers:
            self._local_load = asyncio.create_task(self._note_local_load())

    async def close(self) -> None:
        for loop in (self._tick, self._local_load, self._forget):
            if loop:
                loop.cancel()
        for task in self._finishing.values():
            task.cancel()
        self.releases.close()
        self.schedules.close()
        self.execs.close()
        self.sandboxes.close()
        await self.scheduler.close()
        await self.servers.close()
        await self.webhooks.close()
        if LOCAL in self.pool.workers:
            # Its containers stop with the server: their inputs run again after the restart, as
            # after a preemption, instead of failing as if the containers had crashed.
            await self.lifecycle.worker_lost(LOCAL)
        await self.worker.close()
        await self.calls.flush()
        await self.db.close()

    async def _recover(self) -> None:
        """Pick up accepted work from before a restart, and deployed apps' warm pools."""
        await self.calls.recover()
        for revision_id in [rid for rid, q in self.calls.queues.items() if q.pending]:
            try:
                revision = await self.functions.revision(revision_id)
            except Exception:
                log.warning("pending inputs for unknown function revision %s", revision_id)
                continue
            # A web request's client went with the server: its input would run with nobody to answer.
            if web := {method for method, _, _ in endpoints_of(revision.definition)}:
                await self.calls.fail_queued(revision_id, REQUEST_LOST, lambda i: i.input.method_name in web)
            self.scheduler.add(revision)
        await self.releases.recover()
        now = time.time()
        for app in await self.apps.in_state(api_pb2.APP_STATE_EPHEMERAL):
            self.last_heartbeat[app.app_id] = now
        for app in await self.apps.in_state(api_pb2.APP_STATE_DETACHED):
            if app.entrypoint_done:
                self._finish_detached(app.app_id)
            else:
                self.last_heartbeat[app.app_id] = now

    # -- apps --------------------------------------------------------------

    def prices(self) -> Prices:
        """Read at each use, so an edited prices.json counts without a restart."""
        try:
            return Prices.load(os.path.join(self.settings.home, PRICES_FILE))
        except ValueError as e:
            raise FailedPrecondition(str(e)) from None

    async def _fire_schedule(self, function_id: str) -> None:
        """A scheduled run: a call of the function with no arguments, as a spawn makes it."""
        revision = await self.releases.call_target(function_id)
        no_arguments = api_pb2.FunctionInput(args=NO_ARGUMENTS, data_format=api_pb2.DATA_FORMAT_PICKLE)
        await self.calls.create(revision.revision_id, api_pb2.FUNCTION_CALL_INVOCATION_TYPE_ASYNC, [(0, no_arguments)])

    async def run_in(self, task_id: str, args: list[str], options: ExecOptions) -> Command:
        """A command run in a running container (`modal container exec`), on whichever worker has it;
        not in a sandbox's that is ending."""
        self.sandboxes.check_running(task_id)
        task = self.scheduler.tasks.get(task_id)
        link = self.workers.link(task.allocation.worker_id) if task else None
        try:
            command = await link.exec(task_id, args, options) if link else None
        except ContainerError as e:
            raise FailedPrecondition(f"Could not run the command in container {task_id}: {e}") from None
        if command is None:
            raise NotFound(f"Container {task_id} is not running")
        return command

    async def snapshot_container(self, task: Task, image_id: str, app_id: str, label: str) -> str:
        """An image of a running container's file system: its image and what it changed (a sandbox's
        `snapshot_filesystem`), copied from whichever worker runs it."""
        link = self.workers.link(task.allocation.worker_id)
        if link is None:
            raise FailedPrecondition(f"Worker {task.allocation.worker_id} is gone")

        async def fill(into: str, image_dirs: list[str]) -> None:
            try:
                await link.copy_changes(task.task_id, into)
            except ContainerError as e:
                raise FailedPrecondition(str(e)) from None
            # What the worker mounted into it is not part of its files.
            await asyncio.to_thread(drop_runtime_files, into, LayerView(image_dirs), [], (*MOUNT_POINTS, FS_TOOLS))

        return await self.images.snapshot(image_id, app_id, fill, label)

    async def cancel_call(self, call_id: str, terminate_containers: bool = False) -> None:
        running = await self.calls.cancel(call_id)
        await self.lifecycle.cancel_running(running, terminate_containers)

    def heartbeat(self, app_id: str) -> None:
        self.last_heartbeat[app_id] = time.time()

    def _forget_client(self, app_id: str) -> None:
        """No more heartbeats to wait for: the app stopped, or it is deployed and outlives its client."""
        self.last_heartbeat.pop(app_id, None)

    async def stop_app(self, app_id: str) -> None:
        await self.apps.mark_stopped(app_id)
        self._forget_client(app_id)
        self.schedules.forget(app_id)
        stopped = GenericResult(status=GenericResult.GENERIC_STATUS_TERMINATED, exception="App was stopped")
        for rid in [rid for rid, rev in self.scheduler.revisions.items() if rev.app_id == app_id]:
            self.scheduler.remove(rid)
            await self.calls.fail_queued(rid, stopped)
        self.sandboxes.stop_app(app_id)
        for task in self.scheduler.tasks_of_app(app_id):
            await self.scheduler.kill(task, stopped.status, stopped.exception)
        self.logs.mark_done(app_id)

    async def entrypoint_completed(self, app_id: str) -> None:
        """A detached app's local entrypoint returned (`modal run --detach`): the app stops once
        the calls it made are done, and with it the log stream its client still reads."""
        await self.apps.mark_entrypoint_done(app_id)
        self._finish_detached(app_id)

    def _finish_detached(self, app_id: str) -> None:
        """Stop a detached app once its calls are done: its entrypoint returned, or its client is gone
        (nothing more will come of either); one wait per app, whichever came first."""
        if app_id not in self._finishing:
            task = self._finishing[app_id] = asyncio.create_task(self._stop_when_done(app_id))
            task.add_done_callback(lambda _: self._finishing.pop(app_id, None))

    async def _stop_when_done(self, app_id: str) -> None:
        # `modal app stop` meanwhile ends its calls too, so the wait ends either way.
        while app_id in [(await self.functions.revision(rid)).app_id for rid in self.calls.busy_revisions()]:
            await asyncio.sleep(DETACHED_POLL)
        if (await self.apps.get(app_id)).state == api_pb2.APP_STATE_DETACHED:
            await self.stop_app(app_id)

    async def note_load(self, worker_id: str, load: Load) -> None:
        """A worker's readings, once a second: its CPU load, which the scheduler reads before adding
        containers, and what its containers use, for the meter and `modal function stats`."""
        self.workers.note_load(worker_id, load.cpu_busy, load.task_cores)
        await self.containers.note_usage(load, time.time())

    async def _note_local_load(self) -> None:
        """The embedded worker's readings, as often as a joined worker sends its own."""
        while True:
            await asyncio.sleep(HEARTBEAT_INTERVAL)
            try:
                await self.note_load(LOCAL, self.worker.sample())
            except Exception:
                log.exception("noting the embedded worker's load")

    async def _forget_samples(self) -> None:
        """Containers' old usage samples go, hourly."""
        while True:
            try:
                await self.containers.forget_samples(time.time())
            except Exception:
                log.exception("forgetting old usage samples")
            await asyncio.sleep(3600)

    async def delete_environment_objects(self, environment: str) -> None:
        """A deleted environment's volumes, dicts and queues go with it."""
        for kind in (self.volumes, self.dicts, self.queues):
            for object_id in await kind.objects.ids_in_environment(environment):
                await kind.delete(object_id)

    async def _delete_expired_objects(self) -> None:
        """Ephemeral volumes, dicts and queues whose client stopped sending heartbeats, and queue
        partitions past their partition_ttl."""
        for kind in (self.volumes, self.dicts, self.queues):
            for object_id in await kind.objects.expired(time.time()):
                await kind.delete(object_id)
        await self.queues.drop_expired()

    async def _watch_heartbeats(self) -> None:
        while True:
            await asyncio.sleep(10)
            try:
                await self._delete_expired_objects()
            except Exception:
                log.exception("deleting expired ephemeral objects")
            cutoff = time.time() - APP_HEARTBEAT_TIMEOUT
            for app_id, seen in list(self.last_heartbeat.items()):
                if seen >= cutoff:
                    continue
                state = (await self.apps.get(app_id)).state
                if state == api_pb2.APP_STATE_DEPLOYED:
                    del self.last_heartbeat[app_id]  # deployed apps outlive the client that deployed them
                elif state == api_pb2.APP_STATE_DETACHED:
                    # `--detach`: the app outlives its client, until the calls it made are done
                    del self.last_heartbeat[app_id]
                    log.info("detached app %s lost its client; it stops once its calls are done", app_id)
                    self._finish_detached(app_id)
                else:
                    log.info("app %s lost its client; stopping it", app_id)
                    await self.stop_app(app_id)
