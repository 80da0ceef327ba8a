"""Clusters through the API (`@modal.clustered`, `modal.Cluster`; see control/clusters.py)."""

from collections.abc import Callable

from modal_proto import api_pb2

from ..control.platform import Platform
from ..control.scheduler import Task
from .rpc import unary


class ClusterRpcs:
    p: Platform
    _task: Callable[[], Task]  # the container sending the request

    @unary
    async def TaskClusterHello(self, req):
        return await self.p.clusters.hello(self._task())

    @unary
    async def ClusterGet(self, req):
        return api_pb2.ClusterGetResponse(cluster=self.p.clusters.get(req.cluster_id).stats())
