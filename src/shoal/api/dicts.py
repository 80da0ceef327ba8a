"""The dict side of the API: `modal.Dict` and `modal dict`."""

from google.protobuf import empty_pb2
from modal_proto import api_pb2

from ..control.named_objects import NamedObject
from ..control.platform import Platform
from .rpc import streaming, unary


def _metadata(d: NamedObject) -> api_pb2.DictMetadata:
    return api_pb2.DictMetadata(name=d.name or "", creation_info=d.creation_info())


class DictRpcs:
    p: Platform

    @unary
    async def DictGetOrCreate(self, req):
        data = [(entry.key, entry.value) for entry in req.data]
        d = await self.p.dicts.get_or_create(req.deployment_name, req.environment_name, req.object_creation_type, data)
        return api_pb2.DictGetOrCreateResponse(dict_id=d.object_id, metadata=_metadata(d))

    @unary
    async def DictGetById(self, req):
        d = await self.p.dicts.objects.get(req.dict_id)
        return api_pb2.DictGetByIdResponse(dict_id=d.object_id, metadata=_metadata(d))

    @unary
    async def DictList(self, req):
        found = await self.p.dicts.objects.in_environment(
            req.environment_name, req.pagination.max_objects, req.pagination.created_before
        )
        return api_pb2.DictListResponse(
            environment_name=req.environment_name,
            dicts=[
                api_pb2.DictListResponse.DictInfo(
                    name=d.name, created_at=d.created_at, dict_id=d.object_id, metadata=_metadata(d)
                )
                for d in found
            ],
        )

    @unary
    async def DictHeartbeat(self, req):
        await self.p.dicts.objects.heartbeat(req.dict_id)
        return empty_pb2.Empty()

    @unary
    async def DictDelete(self, req):
        await self.p.dicts.delete(req.dict_id)
        return empty_pb2.Empty()

    @unary
    async def DictClear(self, req):
        await self.p.dicts.clear(req.dict_id)
        return empty_pb2.Empty()

    @unary
    async def DictGet(self, req):
        value = await self.p.dicts.get(req.dict_id, req.key)
        return api_pb2.DictGetResponse(found=value is not None, value=value or b"")

    @unary
    async def DictContains(self, req):
        return api_pb2.DictContainsResponse(found=await self.p.dicts.get(req.dict_id, req.key) is not None)

    @unary
    async def DictUpdate(self, req):
        entries = [(entry.key, entry.value) for entry in req.updates]
        created = await self.p.dicts.update(req.dict_id, entries, req.if_not_exists)
        return api_pb2.DictUpdateResponse(created=created)

    @unary
    async def DictPop(self, req):
        value = await self.p.dicts.pop(req.dict_id, req.key)
        return api_pb2.DictPopResponse(found=value is not None, value=value or b"")

    @unary
    async def DictLen(self, req):
        return api_pb2.DictLenResponse(len=await self.p.dicts.length(req.dict_id))

    @streaming
    async def DictContents(self, req):
        for key, value in await self.p.dicts.contents(req.dict_id):
            yield api_pb2.DictEntry(key=key if req.keys else b"", value=value if req.values else b"")
