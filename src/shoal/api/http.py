"""The HTTP side: blob upload and download for large arguments, results and files; other routes (admin,
volume file blocks) are given."""

import hashlib

from aiohttp import web

from ..store.blobs import BlobStore
from .blob_urls import BlobUrls

MAX_BLOB_BYTES = 2 * 1024**3


def http_app(blobs: BlobStore, urls: BlobUrls, routes: list[web.RouteDef]) -> web.Application:
    async def put_blob(request: web.Request) -> web.Response:
        blob_id = request.match_info["blob_id"]
        if not urls.verify("put", blob_id, request.query.get("sig", "")):
            raise web.HTTPForbidden(text="invalid or missing signature")
        data = await request.read()
        try:
            blobs.put_verified(blob_id.removeprefix("bl-"), data)
        except ValueError:
            raise web.HTTPBadRequest(text="content does not match the blob's sha256") from None
        return web.Response(status=200, headers={"ETag": f'"{hashlib.md5(data).hexdigest()}"'})

    async def get_blob(request: web.Request) -> web.StreamResponse:
        blob_id = request.match_info["blob_id"]
        if not urls.verify("get", blob_id, request.query.get("sig", "")):
            raise web.HTTPForbidden(text="invalid or missing signature")
        sha = blob_id.removeprefix("bl-")
        if not blobs.has(sha):
            raise web.HTTPNotFound(text=f"blob {blob_id} not found")
        return web.FileResponse(blobs.path(sha))

    app = web.Application(client_max_size=MAX_BLOB_BYTES)
    app.router.add_put("/blobs/{blob_id}", put_blob)
    app.router.add_get("/blobs/{blob_id}", get_blob)
    app.router.add_routes(routes)
    return app
