"""Tunnels: a container's port reached from outside its machine, for a sandbox's
`encrypted_ports=`/`unencrypted_ports=`/`h2_ports=` and `modal.forward()` in a function.

An encrypted tunnel is a TLS port the container's worker opens on its machine in front of the
container's port (worker/tls_forward.py). An unencrypted one is the port itself for a container on
its machine's network (a function's), and a plain port the worker opens in front of it for one
with a network of its own (a sandbox's). A function's forwarded ports close with `TunnelStop` or
when its container ends.
"""

from collections.abc import Awaitable, Callable

from modal_proto import api_pb2

from ..runtime import ContainerError
from .errors import AlreadyExists, FailedPrecondition
from .scheduler import Task
from .workers import Workers

Close = Callable[[], Awaitable[None]]


async def _nothing() -> None:
    pass


class Tunnels:
    def __init__(self, workers: Workers):
        self.workers = workers
        self._forwarded: dict[str, dict[int, Close]] = {}  # task id -> port -> what closes its tunnel

    async def open(self, task: Task, port: int, unencrypted: bool, h2: bool) -> tuple[api_pb2.TunnelData, Close]:
        """Where a container's `port` is reached, and what closes the way there."""
        link = self.workers.link(task.allocation.worker_id)
        if link is None:
            raise FailedPrecondition(f"Worker {task.allocation.worker_id} is gone")
        machine = self.workers.address(task.allocation.worker_id)
        try:
            there, close = await link.open_tunnel(task.task_id, port, h2, encrypted=not unencrypted)
        except ContainerError as e:
            raise FailedPrecondition(f"Could not open a tunnel to port {port}: {e}") from None
        if unencrypted:
            return api_pb2.TunnelData(unencrypted_host=machine, unencrypted_port=there, container_port=port), close
        return api_pb2.TunnelData(host=machine, port=there, container_port=port), close

    async def open_all(self, task: Task, specs: list[api_pb2.PortSpec]) -> tuple[list[api_pb2.TunnelData], Close]:
        """A sandbox's declared ports, all or none; returns them and what closes them."""
        found, closers = [], []

        async def close_all() -> None:
            for close in closers:
                await close()

        try:
            for spec in specs:
                tunnel, close = await self.open(
                    task, spec.port, spec.unencrypted, spec.tunnel_type == api_pb2.TUNNEL_TYPE_H2
                )
                found.append(tunnel)
                closers.append(close)
        except BaseException:
            await close_all()
            raise
        return found, close_all

    async def forward(self, task: Task, request: api_pb2.TunnelStartRequest) -> api_pb2.TunnelStartResponse:
        """`modal.forward(port)`: a TLS tunnel to the port, and with `unencrypted` the port itself too."""
        ports = self._forwarded.setdefault(task.task_id, {})
        if request.port in ports:
            raise AlreadyExists(f"Port {request.port} is already forwarded")
        ports[request.port] = _nothing  # taken while the tunnel opens
        specs = [api_pb2.PortSpec(port=request.port, tunnel_type=request.tunnel_type)]
        if request.unencrypted:
            specs.append(api_pb2.PortSpec(port=request.port, unencrypted=True))
        try:
            tunnels, ports[request.port] = await self.open_all(task, specs)
        except BaseException:
            ports.pop(request.port, None)
            raise
        response = api_pb2.TunnelStartResponse(host=tunnels[0].host, port=tunnels[0].port)
        if request.unencrypted:
            response.unencrypted_host, response.unencrypted_port = (
                tunnels[1].unencrypted_host,
                tunnels[1].unencrypted_port,
            )
        return response

    async def stop(self, task_id: str, port: int) -> bool:
        """Close a forwarded port's tunnel; whether it was open."""
        close = self._forwarded.get(task_id, {}).pop(port, None)
        if close:
            await close()
        return close is not None

    async def container_ended(self, task_id: str) -> None:
        for close in self._forwarded.pop(task_id, {}).values():
            await close()
