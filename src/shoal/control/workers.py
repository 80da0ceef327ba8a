"""The machines containers run on: the embedded worker and every `shoal worker` that joined.

Each has a link that starts and stops containers on it; the scheduler sees only
the pool. Containers on a joined worker reach the control plane through that
worker, with a secret issued per container.
"""

import hmac
import secrets
from collections.abc import Awaitable, Callable
from typing import Protocol

from ..runtime import Command
from ..worker.agent import ExecOptions
from ..worker.excess import Excess
from .errors import AlreadyExists, NotFound
from .placement import Pool, Worker

# A container ended: its exit code, whether it was killed for memory, and what it used above
# its reservation (None when its worker could not say).
ExitCallback = Callable[[int, bool, Excess | None], Awaitable[None]]


class Link(Protocol):
    async def start(self, plan, on_output: Callable[[int, bytes], None], on_exit: ExitCallback) -> None:
        """Returns once the container's process runs (then on_exit follows its end); raises if it cannot start."""

    async def stop(self, task_id: str, graceful: bool = False) -> None:
        """Kill the container, or when `graceful`, send it SIGTERM."""

    async def exec(self, task_id: str, args: list[str], options: ExecOptions) -> Command | None:
        """A command run in the container; None if it is not running there."""

    async def probe_tcp(self, task_id: str, port: int) -> bool:
        """Whether something accepts connections on a container's `port`."""

    address: str  # the host the worker's machine is reached at ("" for shoal's own)

    async def copy_changes(self, task_id: str, into: str) -> None:
        """What a container there changed in its file system, copied into `into` on this machine."""

    async def open_tunnel(
        self, task_id: str, port: int, h2: bool = False, encrypted: bool = True
    ) -> tuple[int, Callable[[], Awaitable[None]]]:
        """A port on the worker's machine passing its connections to a container's `port`, and what closes
        it: a TLS one (offering HTTP/2 in its handshake when `h2`), or a plain one, which for a container
        on its machine's own network is the port itself."""

    async def server_address(self, task_id: str, port: int, wait: float) -> tuple[str, int]:
        """(host, port) where shoal's machine reaches `port` of a container with a network of its own (a
        joined worker's forwarded port, once the container listens there, waiting up to `wait` seconds);
        host "" for the worker's machine."""


# A joined worker's cache of fetched images and code, as `shoal workers` shows it; the embedded
# worker has none.
_NO_CACHE = {"cache_bytes": None, "cache_limit_bytes": None}


class Workers:
    def __init__(self, pool: Pool, on_lost: Callable[[str], Awaitable[None]], own_host: str = "127.0.0.1"):
        self.pool = pool
        self.on_lost = on_lost
        self.own_host = own_host  # where shoal's own worker's machine is reached: its API's host
        self.links: dict[str, Link] = {}
        self._secrets: dict[str, str] = {}  # task id -> what its requests must carry
        self._caches: dict[str, dict[str, int | None]] = {}  # worker id -> its cache's bytes held and limit

    def join(self, worker: Worker, link: Link) -> None:
        if worker.worker_id in self.links:
            raise AlreadyExists(f"A worker named {worker.worker_id!r} is already connected; give each a --name")
        self.pool.add(worker)
        self.links[worker.worker_id] = link

    def address(self, worker_id: str) -> str:
        """The host a worker's machine is reached at, by containers on other workers and by clients."""
        link = self.links.get(worker_id)
        if link is None:
            raise NotFound(f"Worker {worker_id} is gone")
        return link.address or self.own_host

    async def leave(self, worker_id: str) -> None:
        """The worker is gone: nothing more is placed on it and what ran there is given up."""
        if self.links.pop(worker_id, None) is not None:
            self._caches.pop(worker_id, None)
            self.pool.remove(worker_id)
            await self.on_lost(worker_id)

    def report(self) -> list[dict]:
        """Every worker with what it has and what is free, for `shoal workers`."""
        return [
            {
                "name": w.worker_id,
                "cpus": w.milli_cpu / 1000,
                "memory_mb": w.memory_mb,
                "gpus": _count(w.all_gpus),
                "free_cpus": w.free_cpu / 1000,
                "free_memory_mb": w.free_memory,
                "free_gpus": _count(w.free_gpus),
                "containers": len(w.allocations),
                "cpu_busy": round(w.cpu_busy, 3),
                **self._caches.get(w.worker_id, _NO_CACHE),
            }
            for w in sorted(self.pool.workers.values(), key=lambda w: w.worker_id)
        ]

    def note_cache(self, worker_id: str, held: int, limit: int) -> None:
        """What a joined worker's heartbeat says of its cache."""
        if worker_id in self.links:
            self._caches[worker_id] = {"cache_bytes": held, "cache_limit_bytes": limit}

    def note_load(self, worker_id: str, busy: float, task_cores: dict[str, float]) -> None:
        if worker := self.pool.workers.get(worker_id):
            worker.cpu_busy, worker.task_cores = busy, task_cores

    def link(self, worker_id: str) -> Link | None:
        return self.links.get(worker_id)

    def issue_secret(self, task_id: str) -> str:
        secret = self._secrets[task_id] = secrets.token_urlsafe(24)
        return secret

    def revoke_secret(self, task_id: str) -> None:
        self._secrets.pop(task_id, None)

    def verify_secret(self, task_id: str, secret: str) -> bool:
        expected = self._secrets.get(task_id)
        return expected is not None and hmac.compare_digest(expected, secret)


def _count(by_type: dict[str, list]) -> dict[str, int]:
    return {gpu_type: len(gpus) for gpu_type, gpus in sorted(by_type.items())}
