"""Sandboxes (`modal.Sandbox`): containers that run a command of the user's instead of a function.

A sandbox's container holds still while its command runs in it as `modal container exec` would
run one, so the command's output is kept whole for readers at any offset, its stdin is written
at offsets, and both work on any worker. The sandbox ends when its command does (its exit code
is the result), at its timeout, when it is terminated, or when its app stops; its container goes
with it. Its code gets no credentials and no socket to shoal's API: it may be anyone's.

The record (app, name, tags, task, result) is kept in the store; the output only in memory, for
a while after the end. A sandbox running when shoal stops ends then, as terminated.
"""

import asyncio
import codecs
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from modal_proto import api_pb2
from sqlalchemy import insert, select, update

from ..runtime import Command
from ..store import schema as t
from ..store.database import Database
from ..worker.agent import ExecOptions
from .apps import Apps, valid_object_name
from .container_plans import allowed_domains, allowed_networks, inbound_networks
from .errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, ShoalError
from .ids import new_id
from .lifecycle import Lifecycle
from .placement import Pool, Request, request_of
from .scheduler import SandboxLaunch, Scheduler, Task
from .secrets import Secrets
from .tunnels import Tunnels
from .workers import Workers

log = logging.getLogger(__name__)

GenericResult = api_pb2.GenericResult
# The client has two kinds of sandbox, with RPCs of their own: the newer (V2, its default) is told
# by ids that do not look like the older's, and its task by a trailing "V" (the client then asks
# for the task's command router through the sandbox); it asks for GPUs and terminals by the older.
V2_MARKER = "V"
PLACEMENT_RETRY = 0.25  # seconds between tries to place a sandbox while the pool is full
KEEP_FINISHED = 600.0  # seconds an ended sandbox's output stays readable
IDLE_CHECK = 0.5  # seconds between looks at whether a sandbox with an idle_timeout is in use
LIST_PAGE = 100

RunIn = Callable[[str, list[str], ExecOptions], Awaitable[Command]]
Busy = Callable[[str], bool]  # task id -> whether a command started in it still runs
# (task, its image id, its app id, a label) -> the id of an image of its file system now
Snapshot = Callable[[Task, str, str, str], Awaitable[str]]
Close = Callable[[], Awaitable[None]]


@dataclass
class Sandbox:
    sandbox_id: str
    app_id: str
    environment: str
    name: str | None
    tags: dict[str, str]
    image_id: str
    timeout_secs: float
    created_at: float
    task_id: str = ""
    finished_at: float | None = None
    result: GenericResult | None = None


@dataclass
class _Live:
    sandbox: Sandbox
    launch: SandboxLaunch
    request: Request  # what its container needs of a worker
    v2: bool
    command: Command | None = None  # its command, once it runs (None for a sandbox with none)
    stdin_index: int = 0  # the last stdin write of the older kind's, which numbers them
    over: bool = False  # it is ending: its container is being stopped, or is gone
    active_at: float = 0.0  # when last seen in use (see idle_timeout)
    snapshots: dict[str, str] = field(default_factory=dict)  # the client's snapshot id -> its image, for retries
    tunnels: list[api_pb2.TunnelData] = field(default_factory=list)  # its ports, once it runs
    ready_at: float = 0.0  # when its readiness probe first succeeded
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # ... or it ended first
    started: asyncio.Event = field(default_factory=asyncio.Event)  # its command runs, or it ended first
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    terminated: asyncio.Event = field(default_factory=asyncio.Event)


def _unsupported(definition: api_pb2.Sandbox) -> str:
    """What of a sandbox's definition shoal cannot do, "" when nothing."""
    if any(m.oidc_auth_role_arn for m in definition.cloud_bucket_mounts):
        return "a CloudBucketMount with oidc_auth_role_arn"
    if definition.nfs_mounts:
        return "network file systems"
    if definition.proxy_id:
        return "proxies"
    if definition.custom_domain:
        return "custom domains"
    return ""


class Sandboxes:
    def __init__(
        self,
        db: Database,
        apps: Apps,
        secrets: Secrets,
        pool: Pool,
        workers: Workers,
        tunnels: Tunnels,
        scheduler: Scheduler,
        lifecycle: Lifecycle,
        run_in: RunIn,
        busy: Busy,
        snapshot: Snapshot,
    ):
        self.db = db
        self.apps = apps
        self.secrets = secrets
        self.pool = pool
        self.workers = workers
        self._tunnels = tunnels
        self.scheduler = scheduler
        self.lifecycle = lifecycle
        self.run_in = run_in
        self.busy = busy
        self._snapshot = snapshot
        self._live: dict[str, _Live] = {}  # sandbox id -> it, while it runs and KEEP_FINISHED after
        self._by_task: dict[str, _Live] = {}
        self._runners: set[asyncio.Task] = set()

    async def close_unfinished(self) -> None:
        """After a restart: the sandboxes that were running ended with the server."""
        ended = GenericResult(status=GenericResult.GENERIC_STATUS_TERMINATED, exception="shoal stopped")
        async with self.db.tx() as conn:
            await conn.execute(
                update(t.sandboxes)
                .where(t.sandboxes.c.finished_at.is_(None))
                .values(finished_at=time.time(), result=ended.SerializeToString())
            )

    def close(self) -> None:
        for runner in self._runners:
            runner.cancel()

    async def create(
        self,
        app_id: str,
        definition: api_pb2.Sandbox,
        secret_sources: list[api_pb2.SecretSource],
        tags: dict[str, str],
        v2: bool = True,
        bucket_keys: dict[str, dict[str, str]] | None = None,
    ) -> Sandbox:
        """Record a sandbox and start it: placed now if the pool has room, else once it has.
        `bucket_keys` are the keys of its bucket mounts whose secrets the client sent inline."""
        if why := _unsupported(definition):
            raise InvalidArgument(f"shoal does not support {why} in sandboxes yet")
        allowed_networks(definition.network_access)  # each one a network
        allowed_domains(definition.network_access)  # each one a name
        inbound_networks(definition)
        app = await self.apps.get(app_id)
        if app.stopped_at is not None:
            raise InvalidArgument(f"App {app_id} is stopped: its sandboxes cannot start")
        name = definition.name or None
        if name is not None:
            if not valid_object_name(name):
                raise InvalidArgument(f"Invalid sandbox name {name!r}")
            if self._running_named(app_id, name):
                raise AlreadyExists(f"A sandbox named '{name}' is already running in the app")
        # What its container needs of a worker: a malformed GPU request fails here, at once.
        request = request_of(api_pb2.Function(resources=definition.resources, volume_mounts=definition.volume_mounts))
        await self.lifecycle.check_sandbox(definition)
        env = await self.secrets.sources_env(secret_sources)
        sandbox = Sandbox(
            sandbox_id=new_id("sb") + (V2_MARKER if v2 else ""),
            app_id=app_id,
            environment=app.environment,
            name=name,
            tags=tags,
            image_id=definition.image_id,
            timeout_secs=float(definition.timeout_secs),
            created_at=time.time(),
        )
        async with self.db.tx() as conn:
            await conn.execute(
                insert(t.sandboxes).values(
                    sandbox_id=sandbox.sandbox_id,
                    app_id=app_id,
                    environment=sandbox.environment,
                    name=name,
                    tags=json.dumps(tags),
                    image_id=sandbox.image_id,
                    timeout_secs=sandbox.timeout_secs,
                    created_at=sandbox.created_at,
                )
            )
        launch = SandboxLaunch(sandbox.sandbox_id, definition, env, bucket_keys or {})
        live = self._live[sandbox.sandbox_id] = _Live(sandbox, launch, request, v2)
        self._spawn(self._run(live))
        return sandbox

    def stop_app(self, app_id: str) -> None:
        """Its app stopped: so do its sandboxes, those still waiting for room too."""
        for live in self._live.values():
            if live.sandbox.app_id == app_id:
                live.terminated.set()

    def _running_named(self, app_id: str, name: str) -> bool:
        return any(
            lv.sandbox.app_id == app_id and lv.sandbox.name == name and not lv.ended.is_set()
            for lv in self._live.values()
        )

    # -- running -----------------------------------------------------------

    async def _run(self, live: _Live) -> None:
        """The sandbox from its placement to its end; cancelled, it leaves its end to the next start."""
        try:
            result = await self._run_until_end(live)
        except ShoalError as e:  # no worker could ever run it, or its command could not start
            result = GenericResult(status=GenericResult.GENERIC_STATUS_FAILURE, exception=str(e))
        except Exception as e:
            log.exception("sandbox %s failed", live.sandbox.sandbox_id)
            result = GenericResult(status=GenericResult.GENERIC_STATUS_INTERNAL_FAILURE, exception=str(e))
        await self._end(live, result)
        await asyncio.sleep(KEEP_FINISHED)
        self._live.pop(live.sandbox.sandbox_id, None)
        self._by_task.pop(live.sandbox.task_id, None)

    async def _run_until_end(self, live: _Live) -> GenericResult:
        definition = live.launch.definition
        task = await self._place(live)
        if task is None:
            return _terminated()
        sandbox = live.sandbox
        sandbox.task_id = task.task_id
        self._by_task[task.task_id] = live
        async with self.db.tx() as conn:
            await conn.execute(
                update(t.sandboxes).where(t.sandboxes.c.sandbox_id == sandbox.sandbox_id).values(task_id=task.task_id)
            )
        if why := await self.lifecycle.start_now(task):
            return GenericResult(
                status=GenericResult.GENERIC_STATUS_FAILURE, exception=f"The sandbox could not start: {why}"
            )
        self.scheduler.mark_running(task.task_id)
        close_tunnels = None
        try:
            if definition.open_ports.ports:
                live.tunnels, close_tunnels = await self._tunnels.open_all(task, list(definition.open_ports.ports))
            if definition.entrypoint_args:
                pty = definition.pty_info
                terminal = (pty.winsz_rows or 24, pty.winsz_cols or 80) if pty.enabled else None
                options = ExecOptions(terminal=terminal)
                live.command = await self.run_in(task.task_id, list(definition.entrypoint_args), options)
                self._spawn(self._log_output(live.command, task))
            if definition.HasField("readiness_probe"):
                self._spawn(self._probe(live, task, definition.readiness_probe))
            live.started.set()
            return await self._until_end(live, task)
        finally:
            live.over = True
            if close_tunnels:
                await close_tunnels()
            if not task.ended.is_set():
                await self.lifecycle.terminate(task)

    async def _probe(self, live: _Live, task: Task, probe: api_pb2.Probe) -> None:
        """Try its readiness probe every `interval_ms` until it succeeds (`Sandbox.wait_until_ready`)."""
        interval = (probe.interval_ms or 100) / 1000
        while not live.over:
            if probe.HasField("exec_command"):
                try:
                    command = await self.run_in(task.task_id, list(probe.exec_command.argv), ExecOptions())
                    passed = await command.wait() == 0
                except ShoalError:
                    passed = False
            else:  # its worker tries the port, where that machine reaches the container
                link = self.workers.link(task.allocation.worker_id)
                passed = await link.probe_tcp(task.task_id, probe.tcp_port) if link else False
            if passed:
                live.ready_at = time.time()
                live.ready.set()
                return
            await asyncio.sleep(interval)

    async def wait_until_ready(self, task_id: str, timeout: float) -> float:
        """When its readiness probe succeeded, waiting up to `timeout`; raises if it ends first."""
        live = self._by_task.get(task_id)
        if live is None:
            raise NotFound(f"No sandbox runs in container {task_id}")
        if not live.launch.definition.HasField("readiness_probe"):
            raise FailedPrecondition(f"Sandbox {live.sandbox.sandbox_id} has no readiness_probe")
        await asyncio.wait_for(live.ready.wait(), timeout)  # TimeoutError: not ready yet
        if not live.ready_at:
            raise FailedPrecondition(f"Sandbox {live.sandbox.sandbox_id} ended before it was ready")
        return live.ready_at

    async def _log_output(self, command: Command, task: Task) -> None:
        """Its command's output into its app's log too, under its task (`Sandbox.logs`, `modal app logs`)."""

        async def copy(fd: int) -> None:
            decoder = codecs.getincrementaldecoder("utf-8")("replace")
            async for _, data in command.read(fd, 0):
                if text := decoder.decode(data):
                    await self.lifecycle.logs.append(task.app_id, task.task_id, task.function_id, fd, text)

        await asyncio.gather(copy(1), copy(2))

    def _spawn(self, coro) -> None:
        runner = asyncio.create_task(coro)
        self._runners.add(runner)
        runner.add_done_callback(self._runners.discard)

    async def _place(self, live: _Live) -> Task | None:
        """A task for the sandbox on a worker with room for it, once one has; None if it was
        terminated meanwhile. Raises Unsatisfiable when no worker ever could run it."""
        sandbox = live.sandbox
        task_id = new_id("ta") + (V2_MARKER if live.v2 else "")
        while not live.terminated.is_set():
            allocation = self.pool.place(live.request, task_id, sandbox.image_id)
            if allocation is not None:
                task = Task(
                    task_id,
                    "",
                    sandbox.sandbox_id,
                    sandbox.app_id,
                    time.time(),
                    allocation,
                    sandbox=live.launch,
                )
                self.scheduler.tasks[task_id] = task
                return task
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(live.terminated.wait(), PLACEMENT_RETRY)
        return None

    async def _until_end(self, live: _Live, task: Task) -> GenericResult:
        """Its result: its command's exit, or whichever of timeout, termination and its
        container's end comes first."""
        waits = {
            asyncio.ensure_future(live.terminated.wait()): "terminated",
            asyncio.ensure_future(task.ended.wait()): "container",
        }
        if live.command:
            waits[asyncio.ensure_future(live.command.wait())] = "command"
        if idle_timeout := live.launch.definition.idle_timeout_secs:
            waits[asyncio.ensure_future(self._idle(live, task.task_id, idle_timeout))] = "idle"
        timeout = live.sandbox.timeout_secs or None
        try:
            done, _ = await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
        ended = {waits[d] for d in done}
        if task.kill_status:  # its app stopped, or its worker was lost
            return GenericResult(status=task.kill_status, exception=task.kill_message)
        if "terminated" in ended:
            return _terminated()
        if "idle" in ended:
            return GenericResult(
                status=GenericResult.GENERIC_STATUS_TIMEOUT,
                exception=f"Sandbox was idle for {live.launch.definition.idle_timeout_secs} seconds (idle_timeout)",
            )
        if "command" in ended:
            code = live.command.returncode
            status = GenericResult.GENERIC_STATUS_SUCCESS if code == 0 else GenericResult.GENERIC_STATUS_FAILURE
            return GenericResult(status=status, exitcode=code if code >= 0 else 128 - code)
        if "container" in ended:
            return GenericResult(
                status=GenericResult.GENERIC_STATUS_FAILURE, exception="The sandbox's container exited unexpectedly"
            )
        return GenericResult(
            status=GenericResult.GENERIC_STATUS_TIMEOUT,
            exception=f"Sandbox timed out after {live.sandbox.timeout_secs:.0f} seconds",
        )

    async def _idle(self, live: _Live, task_id: str, limit: float) -> None:
        """Returns once the sandbox has been idle for `limit` seconds: as in Modal, no command of
        `Sandbox.exec` running in it and nothing written to its stdin (its own command may run)."""
        live.active_at = time.monotonic()
        while True:
            await asyncio.sleep(IDLE_CHECK)
            now = time.monotonic()
            if self.busy(task_id):
                live.active_at = now
            elif now - live.active_at >= limit:
                return

    async def _end(self, live: _Live, result: GenericResult) -> None:
        sandbox = live.sandbox
        sandbox.result, sandbox.finished_at = result, time.time()
        async with self.db.tx() as conn:
            await conn.execute(
                update(t.sandboxes)
                .where(t.sandboxes.c.sandbox_id == sandbox.sandbox_id)
                .values(finished_at=sandbox.finished_at, result=result.SerializeToString())
            )
        live.started.set()
        live.ready.set()
        live.ended.set()

    # -- asking --------------------------------------------------------------

    async def get(self, sandbox_id: str) -> Sandbox:
        if live := self._live.get(sandbox_id):
            return live.sandbox
        async with self.db.tx() as conn:
            row = (await conn.execute(select(t.sandboxes).where(t.sandboxes.c.sandbox_id == sandbox_id))).one_or_none()
        if row is None:
            raise NotFound(f"Sandbox {sandbox_id} not found")
        return _from_row(row)

    async def wait(self, sandbox_id: str, timeout: float) -> Sandbox:
        """The sandbox once it ended (its result set), or after `timeout` (its result still None)."""
        if live := self._live.get(sandbox_id):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(live.ended.wait(), timeout)
            return live.sandbox
        return await self.get(sandbox_id)

    async def task_id(self, sandbox_id: str, timeout: float) -> tuple[str, GenericResult | None]:
        """Its task once its command runs (waiting up to `timeout`), else ""; with its result if it ended."""
        sandbox = await self.get(sandbox_id)
        if live := self._live.get(sandbox_id):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(live.started.wait(), timeout)
            return (sandbox.task_id if live.started.is_set() else ""), sandbox.result
        return sandbox.task_id, sandbox.result

    async def tunnels(self, sandbox_id: str, timeout: float) -> tuple[list[api_pb2.TunnelData], GenericResult | None]:
        """Where its ports are reached, once it runs (waiting up to `timeout`); with its result if it ended."""
        sandbox = await self.get(sandbox_id)
        live = self._live.get(sandbox_id)
        if live is None:
            return [], sandbox.result
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(live.started.wait(), timeout)
        return live.tunnels, sandbox.result

    async def terminate(self, sandbox_id: str) -> GenericResult | None:
        """Ends it; returns the result it had already, if it had ended."""
        sandbox = await self.get(sandbox_id)
        if sandbox.result is not None:
            return sandbox.result
        live = self._live[sandbox_id]
        live.terminated.set()
        await live.ended.wait()
        return None

    async def command(self, task_id: str) -> Command | None:
        """The command a sandbox's task runs, once it runs (None for a sandbox with none, after it ended)."""
        live = self._by_task.get(task_id)
        if live is None:
            raise NotFound(f"No sandbox runs in container {task_id}")
        return await _command(live)

    async def output(self, sandbox_id: str) -> Command | None:
        """The same, by the sandbox's id (None also once its output is no longer kept)."""
        live = self._live.get(sandbox_id)
        if live is None:
            await self.get(sandbox_id)  # NotFound for one that never was
            return None
        return await _command(live)

    async def snapshot_filesystem(self, task_id: str, snapshot_id: str) -> str:
        """An image of the sandbox's file system as it is now (`Sandbox.snapshot_filesystem`)."""
        live = self._by_task.get(task_id)
        task = self.scheduler.tasks.get(task_id)
        if live is None or task is None or live.over:
            raise NotFound(f"No sandbox runs in container {task_id}")
        if snapshot_id not in live.snapshots:
            sandbox = live.sandbox
            label = f"snapshot of sandbox {sandbox.sandbox_id}"
            live.snapshots[snapshot_id] = await self._snapshot(task, sandbox.image_id, sandbox.app_id, label)
        return live.snapshots[snapshot_id]

    async def stdin(self, task_id: str) -> Command:
        """The command to write a sandbox's stdin to, once it runs; writing counts as use (see idle_timeout)."""
        live = self._by_task.get(task_id)
        if live is None:
            raise NotFound(f"No sandbox runs in container {task_id}")
        return await _stdin(live)

    async def write_stdin(self, sandbox_id: str, index: int, data: bytes, eof: bool) -> None:
        """Stdin as the older kind writes it: numbered writes, of which one sent again is written once."""
        live = self._live.get(sandbox_id)
        if live is None:
            raise FailedPrecondition(f"Sandbox {sandbox_id} runs no command to write to")
        command = await _stdin(live)
        if index > live.stdin_index:
            live.stdin_index = index
            await command.write_stdin(command.stdin_offset, data, eof)

    def task_of(self, sandbox_id: str) -> str:
        """The task of a sandbox whose command ran, while its output is kept."""
        live = self._live.get(sandbox_id)
        if live is None or not live.started.is_set() or not live.sandbox.task_id:
            raise NotFound(f"Sandbox {sandbox_id} is not running")
        return live.sandbox.task_id

    def running(self, sandbox_id: str) -> str:
        """The task of a sandbox that has not ended ("" before its container runs); NotFound otherwise."""
        live = self._live.get(sandbox_id)
        if live is None or live.over:
            raise NotFound(f"Sandbox {sandbox_id} is not running")
        return live.sandbox.task_id if live.started.is_set() else ""

    def inbound(self, sandbox_id: str) -> list[str] | None:
        """Where its connect tokens take connections from (inbound_cidr_allowlist); None for anywhere."""
        live = self._live.get(sandbox_id)
        return inbound_networks(live.launch.definition) if live else None

    def is_sandbox_task(self, task_id: str) -> bool:
        return task_id in self._by_task

    def check_running(self, task_id: str) -> None:
        """Before a command starts in a container: a sandbox's must not be ending."""
        live = self._by_task.get(task_id)
        if live is not None and live.over:
            raise FailedPrecondition(f"Sandbox {live.sandbox.sandbox_id} has finished: no more commands run in it")

    async def set_tags(self, sandbox_id: str, tags: dict[str, str]) -> None:
        sandbox = await self.get(sandbox_id)
        sandbox.tags = tags
        async with self.db.tx() as conn:
            await conn.execute(
                update(t.sandboxes).where(t.sandboxes.c.sandbox_id == sandbox_id).values(tags=json.dumps(tags))
            )

    async def set_name(self, sandbox_id: str, name: str) -> None:
        sandbox = await self.get(sandbox_id)
        if sandbox.name == name:
            return
        if sandbox.name is not None:
            raise InvalidArgument(f"Sandbox {sandbox_id} is named '{sandbox.name}' already")
        if not valid_object_name(name):
            raise InvalidArgument(f"Invalid sandbox name {name!r}")
        if self._running_named(sandbox.app_id, name):
            raise AlreadyExists(f"A sandbox named '{name}' is already running in the app")
        sandbox.name = name
        async with self.db.tx() as conn:
            await conn.execute(update(t.sandboxes).where(t.sandboxes.c.sandbox_id == sandbox_id).values(name=name))

    async def by_name(self, app_id: str, name: str, include_finished: bool) -> Sandbox:
        """The app's sandbox of that name: the running one, else (if asked) the newest that ended."""
        query = select(t.sandboxes).where(t.sandboxes.c.app_id == app_id, t.sandboxes.c.name == name)
        if not include_finished:
            query = query.where(t.sandboxes.c.finished_at.is_(None))
        async with self.db.tx() as conn:
            row = (await conn.execute(query.order_by(t.sandboxes.c.created_at.desc()).limit(1))).one_or_none()
        if row is None:
            raise NotFound(f"Sandbox '{name}' not found")
        return await self.get(row.sandbox_id)

    async def list(
        self, app_id: str, environment: str, tags: dict[str, str], include_finished: bool, before: float
    ) -> list[Sandbox]:
        """Newest first, created before `before` (0: now); of an app, else of an environment."""
        query = select(t.sandboxes).order_by(t.sandboxes.c.created_at.desc())
        if app_id:
            query = query.where(t.sandboxes.c.app_id == app_id)
        else:
            query = query.where(t.sandboxes.c.environment == environment)
        if not include_finished:
            query = query.where(t.sandboxes.c.finished_at.is_(None))
        if before:
            query = query.where(t.sandboxes.c.created_at < before)
        if not tags:  # else the tags are matched here, row by row
            query = query.limit(LIST_PAGE)
        found = []
        async with self.db.tx() as conn:
            for row in await conn.execute(query):
                sandbox = self._live[row.sandbox_id].sandbox if row.sandbox_id in self._live else _from_row(row)
                if tags.items() <= sandbox.tags.items():
                    found.append(sandbox)
                    if len(found) == LIST_PAGE:
                        break
        return found


async def _command(live: _Live) -> Command | None:
    await live.started.wait()
    if live.command is None:
        await live.ended.wait()
    return live.command


async def _stdin(live: _Live) -> Command:
    await live.started.wait()
    if live.command is None:
        raise FailedPrecondition(f"Sandbox {live.sandbox.sandbox_id} runs no command to write to")
    live.active_at = time.monotonic()
    return live.command


def _terminated() -> GenericResult:
    return GenericResult(status=GenericResult.GENERIC_STATUS_TERMINATED, exception="Sandbox was terminated")


def _from_row(row) -> Sandbox:
    return Sandbox(
        sandbox_id=row.sandbox_id,
        app_id=row.app_id,
        environment=row.environment,
        name=row.name,
        tags=json.loads(row.tags),
        image_id=row.image_id,
        timeout_secs=row.timeout_secs,
        created_at=row.created_at,
        task_id=row.task_id or "",
        finished_at=row.finished_at,
        result=GenericResult.FromString(row.result) if row.result is not None else None,
    )
