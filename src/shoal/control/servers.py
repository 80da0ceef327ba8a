"""Servers (`@app.server`): containers running an HTTP server of their own on a port, reached at
the server's URL through shoal's web front (api/server_proxy.py), which passes each request on.

A server takes no inputs. Its requests in flight stand for inputs in the autoscaler (the
scheduler asks `load`), and a request waiting for a container kicks it. A container serves once
its client says @enter is done (`ContainerServerLifecycleReady`) and its port accepts
connections; each request goes to the ready container with the fewest requests in flight, below
`max_concurrency` where it is set. Each server container has a network of its own
(runtime/network.py), so all of a server's containers listen on the same port.
"""

import asyncio
import logging
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from modal_proto import api_pb2

from ..runtime import ContainerError
from ..worker.tls_forward import accepts
from .errors import FailedPrecondition, NotFound
from .functions import Revision
from .pulse import Pulse
from .scheduler import Scheduler, Task
from .workers import Workers

log = logging.getLogger(__name__)

PROBE_EVERY = 0.1  # seconds between tries of a ready container's port
PROBE_TIMEOUT = 2.0


class NoServer(Exception):
    """No container of the server was ready in time for the request, or one failed to start while
    it waited (the exception's message says why)."""


class AtCapacity(Exception):
    """Every ready container of the server has `max_concurrency` requests in flight."""


@dataclass
class Backend:
    task: Task
    host: str  # where its port is reached from shoal's machine
    port: int
    in_flight: int = 0
    served: int = 0  # requests it has taken, which spreads requests over containers equally idle


class Servers:
    def __init__(self, scheduler: Scheduler, workers: Workers):
        self.scheduler = scheduler
        self.workers = workers
        self._backends: dict[str, dict[str, Backend]] = defaultdict(dict)  # revision id -> task id -> backend
        self._waiting: Counter[str] = Counter()  # revision id -> requests waiting for a container
        self._changed = Pulse()  # a container became ready or a request ended
        self._probes: set[asyncio.Task] = set()
        self._probing: set[str] = set()  # task ids whose ports are being tried
        self._failed: dict[str, tuple[float, str]] = {}  # revision id -> when and why a container last failed to start

    def load(self, revision_id: str) -> tuple[int, Counter[str]]:
        """For the autoscaler: requests waiting for a container, and those in flight per task id."""
        backends = self._backends.get(revision_id, {})
        return self._waiting[revision_id], Counter({b.task.task_id: b.in_flight for b in backends.values()})

    def lifecycle_ready(self, task: Task, fdef: api_pb2.Function) -> None:
        """The container's client says @enter is done: it serves once its port accepts connections.
        FailedPrecondition from a container that is not a server's; said again, nothing more is done."""
        if not fdef.is_server:
            raise FailedPrecondition(f"Container {task.task_id} is not a server's")
        if task.ready or task.task_id in self._probing:
            return
        self._probing.add(task.task_id)
        probe = asyncio.create_task(self._probe(task, fdef))
        self._probes.add(probe)
        probe.add_done_callback(self._probes.discard)
        probe.add_done_callback(lambda _: self._probing.discard(task.task_id))

    async def _probe(self, task: Task, fdef: api_pb2.Function) -> None:
        port = fdef.http_config.port
        limit = fdef.http_config.startup_timeout or fdef.startup_timeout_secs
        try:
            host, reached_port = await self.reach(task, port, max(0.0, task.started_at + limit - time.time()))
        except ContainerError as e:
            await self._failed(task, f"Could not reach the server's port {port}: {e}")
            return
        while not await accepts(host, reached_port, PROBE_TIMEOUT):
            if task.state not in ("starting", "running"):
                return
            if time.time() - task.started_at > limit:
                await self._failed(task, f"Nothing accepted connections on port {port} within {limit} seconds")
                return
            await asyncio.sleep(PROBE_EVERY)
        if task.state not in ("starting", "running"):
            return
        task.ready, task.ready_at = True, time.time()
        self.scheduler.mark_running(task.task_id)
        self._backends[task.revision_id][task.task_id] = Backend(task, host, reached_port)
        self._changed.notify()

    async def reach(self, task: Task | str, port: int, wait: float = 0) -> tuple[str, int]:
        """(host, port) where shoal's machine reaches `port` of a container (a task, or its id) with
        a network of its own: on a joined worker, once it listens there (waiting up to `wait`).
        NotFound for a container that is not running; ContainerError when it is out of reach."""
        if isinstance(task, str):
            if (found := self.scheduler.tasks.get(task)) is None:
                raise NotFound(f"Container {task} is not running")
            task = found
        link = self.workers.link(task.allocation.worker_id)
        if link is None:
            raise ContainerError(f"worker {task.allocation.worker_id} is gone")
        host, reached_port = await link.server_address(task.task_id, port, wait)
        return host or self.workers.address(task.allocation.worker_id), reached_port  # "": the worker's machine

    async def _failed(self, task: Task, why: str) -> None:
        log.warning("server container %s: %s", task.task_id, why)
        task.startup_failure = api_pb2.GenericResult(status=api_pb2.GenericResult.GENERIC_STATUS_FAILURE, exception=why)
        await self.scheduler.terminate(task)

    @asynccontextmanager
    async def request(self, revision: Revision, wait: float) -> AsyncIterator[Backend]:
        """A ready container for one request, held for it until the block ends. AtCapacity when every
        ready one is at max_concurrency (as in Modal, the request is refused, not queued); NoServer
        when none is ready within `wait` seconds."""
        rid = revision.revision_id
        limit = revision.definition.max_concurrent_inputs  # the server's max_concurrency; 0: no bound
        began, deadline = time.monotonic(), time.monotonic() + wait
        self._waiting[rid] += 1
        try:
            while (backend := self._pick(rid, limit)) is None:
                if self._pick(rid, 0) is not None:
                    raise AtCapacity
                failed_at, why = self._failed.get(rid, (0.0, ""))
                if failed_at > began:  # the request waits for no container that would fail the same way
                    raise NoServer(why)
                self.scheduler.kick(rid)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise NoServer
                await self._changed.wait(min(remaining, 1.0))
        finally:
            self._waiting[rid] -= 1
            if not self._waiting[rid]:
                del self._waiting[rid]
        backend.in_flight += 1
        backend.served += 1
        try:
            yield backend
        finally:
            backend.in_flight -= 1
            backend.task.idle_since = time.monotonic()
            self._changed.notify()
            if backend.task.state == "draining" and not backend.in_flight:
                self.scheduler.kick(rid)  # it stops now

    def _pick(self, revision_id: str, limit: int) -> Backend | None:
        ready = [
            b
            for b in self._backends.get(revision_id, {}).values()
            if b.task.state == "running" and (not limit or b.in_flight < limit)
        ]
        return min(ready, key=lambda b: (b.in_flight, b.served), default=None)

    def container_ended(self, task: Task, code: int) -> None:
        # one that was not stopped nor told to finish, yet never served
        if not task.ready and not task.kill_status and not task.drain_deadline:
            why = task.startup_failure.exception if task.startup_failure else f"it exited with code {code}"
            self._failed[task.revision_id] = (time.monotonic(), f"A container of the server failed to start: {why}")
            self._changed.notify()
        backends = self._backends.get(task.revision_id)
        if backends and backends.pop(task.task_id, None) and not backends:
            del self._backends[task.revision_id]

    async def close(self) -> None:
        for probe in list(self._probes):
            probe.cancel()
