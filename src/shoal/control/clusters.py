"""Clusters (`@modal.clustered(size=N)`): N containers of a function that start and work as one.

The scheduler places a cluster's containers all at once or not at all, and counts clusters
where it counts containers otherwise. Rank 0, the lead, takes the cluster's inputs from the
queue; each is broadcast to the other ranks, and the lead's output is the call's. A failure
on another rank fails the input. When one of its containers ends, the others are stopped
(lifecycle.py): their collective work cannot go on without it.

Containers share their machine's network, so each rank's cluster address is its machine's:
`i6pn.modal.local` in the container names it (IPv4 addresses in IPv6's mapped form).
"""

import asyncio
import ipaddress
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from modal_proto import api_pb2

from .calls import TERMINAL_FAILURES, Calls, Input
from .errors import FailedPrecondition, NotFound
from .pulse import Pulse

if TYPE_CHECKING:
    from .scheduler import Scheduler, Task


@dataclass
class Cluster:
    cluster_id: str
    app_id: str
    members: list["Task"]  # its containers, by rank; rank 0 is the lead
    started_at: float = field(default_factory=time.time)
    addresses: dict[int, str] = field(default_factory=dict)  # rank -> its machine's IP, once its plan is made
    hellos: set[int] = field(default_factory=set)  # ranks whose client has started (TaskClusterHello)
    complete: asyncio.Event = field(default_factory=asyncio.Event)  # every rank has said hello
    broken: asyncio.Event = field(default_factory=asyncio.Event)  # a container of it has ended
    # The lead's inputs, for the other ranks: inputs[i] is the (base + i)-th; cursors by rank.
    inputs: list[Input] = field(default_factory=list)
    base: int = 0
    cursors: dict[int, int] = field(default_factory=dict)
    pulse: Pulse = field(default_factory=Pulse)

    @property
    def task_ids(self) -> list[str]:
        return [t.task_id for t in self.members]

    @property
    def lead(self) -> str:
        return self.members[0].task_id

    def broadcast(self, inputs: list[Input]) -> None:
        """Inputs the lead took: every other rank runs them too."""
        if len(self.members) > 1 and inputs:
            self.inputs += inputs
            self.pulse.notify()

    async def inputs_for(self, rank: int, max_n: int, timeout: float, stop: asyncio.Event) -> list[Input]:
        """The next of the lead's inputs for another rank, waiting up to `timeout` for one."""
        deadline = time.monotonic() + timeout
        while self._unread(rank) == 0 and not stop.is_set() and not self.broken.is_set():
            if (left := deadline - time.monotonic()) <= 0:
                return []
            await self.pulse.wait(left)
        if stop.is_set() or self.broken.is_set():
            return []
        start = self.cursors.get(rank, 0) - self.base
        taken = self.inputs[start : start + max_n]
        self.cursors[rank] = self.base + start + len(taken)
        # what every rank has read goes
        done = min(self.cursors.get(r, 0) for r in range(1, len(self.members))) - self.base
        if done > 0:
            del self.inputs[:done]
            self.base += done
        return taken

    def _unread(self, rank: int) -> int:
        return self.base + len(self.inputs) - self.cursors.get(rank, 0)

    async def hello(self, rank: int) -> None:
        """Rank `rank` has started: wait for the others (they learn each other's addresses)."""
        self.hellos.add(rank)
        if len(self.hellos) == len(self.members):
            self.complete.set()
        ended = asyncio.ensure_future(self.broken.wait())
        everyone = asyncio.ensure_future(self.complete.wait())
        try:
            await asyncio.wait([ended, everyone], return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
            everyone.cancel()
        if not self.complete.is_set():
            raise FailedPrecondition(f"Cluster {self.cluster_id} ended before all its containers started")

    def stats(self) -> api_pb2.ClusterStats:
        return api_pb2.ClusterStats(
            cluster_id=self.cluster_id, app_id=self.app_id, task_ids=self.task_ids, started_at=self.started_at
        )


def machine_ip(host: str) -> str:
    """The IP a host name stands for (the first IPv4 one when it has several)."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        infos.sort(key=lambda info: info[0] != socket.AF_INET)
        return infos[0][4][0]


def ipv6_form(ip: str) -> str:
    """An address as IPv6 names it: IPv4 ones in their mapped form (::ffff:a.b.c.d)."""
    address = ipaddress.ip_address(ip)
    return f"::ffff:{address}" if address.version == 4 else str(address)


class Clusters:
    """The RPCs of a cluster's containers, and lookups of the running clusters."""

    def __init__(self, calls: Calls, scheduler: "Scheduler"):
        self.calls = calls
        self.scheduler = scheduler

    def running(self) -> dict[str, Cluster]:
        return {t.cluster.cluster_id: t.cluster for t in list(self.scheduler.tasks.values()) if t.cluster}

    def get(self, cluster_id: str) -> Cluster:
        cluster = self.running().get(cluster_id)
        if cluster is None:
            raise NotFound(f"Cluster {cluster_id} is not running")
        return cluster

    async def hello(self, task: "Task") -> api_pb2.TaskClusterHelloResponse:
        """A container's client has started: once all its cluster's have, each learns its rank and
        every rank's address."""
        cluster = task.cluster
        if cluster is None:
            raise FailedPrecondition(f"Container {task.task_id} is not part of a cluster")
        await cluster.hello(task.rank)
        ips = [cluster.addresses[rank] for rank in range(len(cluster.members))]
        return api_pb2.TaskClusterHelloResponse(
            cluster_id=cluster.cluster_id,
            cluster_rank=task.rank,
            container_ips=[ipv6_form(ip) for ip in ips],
            container_ipv4_ips=[ip if ipaddress.ip_address(ip).version == 4 else "" for ip in ips],
        )

    async def next_inputs(self, task: "Task", max_n: int, timeout: float, linger: float) -> list[Input]:
        """A container's next inputs: from the queue for a lead (or a container of no cluster), the
        lead's for the other ranks of its cluster."""
        cluster = task.cluster
        if cluster is not None and task.rank > 0:
            return await cluster.inputs_for(task.rank, max_n, timeout, task.stop)
        inputs = await self.calls.next_inputs(task.revision_id, task.task_id, max_n, timeout, task.stop, linger)
        if cluster is not None:
            cluster.broadcast(inputs)
        return inputs

    async def put_data_out(self, task: "Task", call_id: str, chunks: list[api_pb2.DataChunk]) -> None:
        """A generator's items: a cluster's lead's are the call's, the other ranks' go nowhere."""
        if task.rank == 0:
            await self.calls.put_data_out(task.task_id, call_id, chunks)

    async def put_output(self, task: "Task", input_id: str, result: api_pb2.GenericResult, data_format: int) -> None:
        """A container's output. Another rank's counts only when it failed: it is then the input's,
        and the cluster stops (its lead may wait forever on the rank that failed)."""
        cluster = task.cluster
        if cluster is None or task.rank == 0:
            await self.calls.put_output(task.task_id, input_id, result, data_format)
        elif result.status in TERMINAL_FAILURES:
            await self.calls.put_output(cluster.lead, input_id, result, data_format)
            await self.scheduler.kill(
                task, api_pb2.GenericResult.GENERIC_STATUS_INTERNAL_FAILURE, f"Rank {task.rank} of its cluster failed"
            )
