"""The queue side of the API: `modal.Queue` and `modal queue`."""

from google.protobuf import empty_pb2
from modal_proto import api_pb2

from ..control.named_objects import NamedObject
from ..control.platform import Platform
from .rpc import poll_timeout, unary

# Long-polls return before the client's own attempt timeout would fire.
MAX_POLL = 50.0
LAST_ENTRY = 2**31 - 1  # entry ids are the store's item numbers


def _metadata(queue: NamedObject) -> api_pb2.QueueMetadata:
    return api_pb2.QueueMetadata(name=queue.name or "", creation_info=queue.creation_info())


class QueueRpcs:
    p: Platform

    @unary
    async def QueueGetOrCreate(self, req):
        queue, _ = await self.p.queues.objects.get_or_create(
            req.deployment_name, req.environment_name, req.object_creation_type
        )
        return api_pb2.QueueGetOrCreateResponse(queue_id=queue.object_id, metadata=_metadata(queue))

    @unary
    async def QueueGetById(self, req):
        queue = await self.p.queues.objects.get(req.queue_id)
        return api_pb2.QueueGetByIdResponse(queue_id=queue.object_id, metadata=_metadata(queue))

    @unary
    async def QueueList(self, req):
        found = await self.p.queues.objects.in_environment(
            req.environment_name, req.pagination.max_objects, req.pagination.created_before
        )
        sizes = await self.p.queues.sizes([queue.object_id for queue in found])
        items = [
            api_pb2.QueueListResponse.QueueInfo(
                name=queue.name,
                created_at=queue.created_at,
                num_partitions=sizes.get(queue.object_id, (0, 0))[0],
                total_size=sizes.get(queue.object_id, (0, 0))[1],
                queue_id=queue.object_id,
                metadata=_metadata(queue),
            )
            for queue in found
        ]
        return api_pb2.QueueListResponse(environment_name=req.environment_name, queues=items)

    @unary
    async def QueueHeartbeat(self, req):
        await self.p.queues.objects.heartbeat(req.queue_id)
        return empty_pb2.Empty()

    @unary
    async def QueueDelete(self, req):
        await self.p.queues.delete(req.queue_id)
        return empty_pb2.Empty()

    @unary
    async def QueuePut(self, req):
        await self.p.queues.put(req.queue_id, req.partition_key, list(req.values), req.partition_ttl_seconds)
        return empty_pb2.Empty()

    @unary
    async def QueueGet(self, req):
        values = await self.p.queues.get(
            req.queue_id, req.partition_key, req.n_values, poll_timeout(req.timeout, MAX_POLL)
        )
        return api_pb2.QueueGetResponse(values=values)

    @unary
    async def QueueNextItems(self, req):
        digits = req.last_entry_id.isascii() and req.last_entry_id.isdigit()
        after = min(int(req.last_entry_id), LAST_ENTRY) if digits else 0
        items = await self.p.queues.next_items(
            req.queue_id, req.partition_key, after, poll_timeout(req.item_poll_timeout, MAX_POLL)
        )
        return api_pb2.QueueNextItemsResponse(
            items=[api_pb2.QueueItem(value=value, entry_id=str(seq)) for seq, value in items]
        )

    @unary
    async def QueueLen(self, req):
        return api_pb2.QueueLenResponse(len=await self.p.queues.length(req.queue_id, req.partition_key, req.total))

    @unary
    async def QueueClear(self, req):
        await self.p.queues.clear(req.queue_id, req.partition_key, req.all_partitions)
        return empty_pb2.Empty()
