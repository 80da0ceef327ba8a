"""The volume side of the API: `modal.Volume` and `modal volume`, in the client's v1 protocol,
and the HTTP route that serves a volume file's blocks to `Volume.read_file` and `modal volume get`."""

from aiohttp import web
from google.protobuf import empty_pb2
from modal._utils.blob_utils import BLOCK_SIZE
from modal_proto import api_pb2

from ..control.errors import InvalidArgument, NotFound
from ..control.platform import Platform
from ..control.volumes import V1, Volumes, metadata
from .blob_urls import BlobUrls
from .rpc import streaming, unary

# Entries per VolumeListFiles message.
LIST_BATCH = 100


class VolumeRpcs:
    p: Platform
    blob_urls: BlobUrls

    @unary
    async def VolumeGetOrCreate(self, req):
        volume = await self.p.volumes.get_or_create(
            req.deployment_name, req.environment_name, req.object_creation_type, req.version
        )
        return api_pb2.VolumeGetOrCreateResponse(volume_id=volume.object_id, version=V1, metadata=metadata(volume))

    @unary
    async def VolumeGetById(self, req):
        volume = await self.p.volumes.objects.get(req.volume_id)
        return api_pb2.VolumeGetByIdResponse(volume_id=volume.object_id, metadata=metadata(volume))

    @unary
    async def VolumeList(self, req):
        volumes = await self.p.volumes.objects.in_environment(
            req.environment_name, req.pagination.max_objects, req.pagination.created_before
        )
        return api_pb2.VolumeListResponse(
            environment_name=req.environment_name,
            items=[
                api_pb2.VolumeListItem(
                    label=v.name, volume_id=v.object_id, created_at=v.created_at, metadata=metadata(v)
                )
                for v in volumes
            ],
        )

    @unary
    async def VolumeHeartbeat(self, req):
        await self.p.volumes.objects.heartbeat(req.volume_id)
        return empty_pb2.Empty()

    @unary
    async def VolumeDelete(self, req):
        await self.p.volumes.delete(req.volume_id)
        return empty_pb2.Empty()

    @unary
    async def VolumeRename(self, req):
        await self.p.volumes.objects.rename(req.volume_id, req.name)
        return empty_pb2.Empty()

    @unary
    async def VolumeCommit(self, req):
        await self.p.volumes.commit(req.volume_id)
        # Every container sees the same files: there is nothing to reload.
        return api_pb2.VolumeCommitResponse(skip_reload=True)

    @unary
    async def VolumeReload(self, req):
        await self.p.volumes.objects.get(req.volume_id)
        return empty_pb2.Empty()

    @streaming
    async def VolumeListFiles(self, req):
        entries = await self.p.volumes.listing(req.volume_id, req.path, req.recursive)
        if req.max_entries:
            entries = entries[: req.max_entries]
        for i in range(0, len(entries), LIST_BATCH):
            yield api_pb2.VolumeListFilesResponse(entries=entries[i : i + LIST_BATCH])

    @unary
    async def VolumeGetFile2(self, req):
        size = await self.p.volumes.size(req.volume_id, req.path)
        if req.start < 0 or req.len < 0:
            raise InvalidArgument("start and len may not be negative")
        start = min(req.start, size)
        length = min(req.len or size, size - start)
        urls = [
            self.blob_urls.volume_block(req.volume_id, req.path, begin, end - begin)
            for begin, end in blocks(start, length)
        ]
        return api_pb2.VolumeGetFile2Response(get_urls=urls, size=size, start=start, len=length)

    @unary
    async def VolumePutFiles(self, req):
        await self.p.volumes.put(req.volume_id, list(req.files), overwrite=not req.disallow_overwrite_existing_files)
        return empty_pb2.Empty()

    @unary
    async def VolumeRemoveFile(self, req):
        await self.p.volumes.remove(req.volume_id, req.path, req.recursive)
        return empty_pb2.Empty()

    @unary
    async def VolumeCopyFiles(self, req):
        if req.recursive:
            raise InvalidArgument("Copying directories recursively needs a v2 volume, which shoal does not have")
        await self.p.volumes.copy(req.volume_id, list(req.src_paths), req.dst_path)
        return empty_pb2.Empty()


def blocks(start: int, length: int) -> list[tuple[int, int]]:
    """The byte range cut at BLOCK_SIZE boundaries, as the client expects one URL for each."""
    end = start + length
    cuts = []
    while start < end:
        stop = min(end, (start // BLOCK_SIZE + 1) * BLOCK_SIZE)
        cuts.append((start, stop))
        start = stop
    return cuts


def volume_routes(volumes: Volumes, urls: BlobUrls) -> list[web.RouteDef]:
    async def get_block(request: web.Request) -> web.Response:
        volume_id, query = request.match_info["volume_id"], request.query
        if not urls.verify_volume_block(volume_id, query):
            raise web.HTTPForbidden(text="invalid or missing signature")
        try:
            data = await volumes.read(volume_id, query["path"], int(query["start"]), int(query["len"]))
        except NotFound as e:
            raise web.HTTPNotFound(text=str(e)) from None
        except InvalidArgument as e:
            raise web.HTTPBadRequest(text=str(e)) from None
        return web.Response(body=data, content_type="application/octet-stream")

    return [web.get("/volumes/{volume_id}/blocks", get_block)]
