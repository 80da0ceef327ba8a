"""`modal.forward()` through the API: a function container's ports reached from outside (see
control/tunnels.py)."""

from collections.abc import Callable

from modal_proto import api_pb2

from ..control.platform import Platform
from ..control.scheduler import Task
from .rpc import unary


class TunnelRpcs:
    p: Platform
    _task: Callable[[], Task]  # the container sending the request

    @unary
    async def TunnelStart(self, req):
        return await self.p.tunnels.forward(self._task(), req)

    @unary
    async def TunnelStop(self, req):
        return api_pb2.TunnelStopResponse(exists=await self.p.tunnels.stop(self._task().task_id, req.port))
