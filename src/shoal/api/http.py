"""The HTTP side: blob upload and download for large arguments, results and files, in one
request or, past MULTIPART_THRESHOLD, in parts as S3 takes them; other routes (admin, volume
file blocks) are given."""

import asyncio
import hashlib

from aiohttp import web

from ..store.blobs import BlobStore
from .blob_urls import BlobUrls

MAX_BLOB_BYTES = 2 * 1024**3  # in one request; larger blobs come in parts


def http_app(blobs: BlobStore, urls: BlobUrls, routes: list[web.RouteDef]) -> web.Application:
    def check(request: web.Request, verb: str, signed: str) -> str:
        if not urls.verify(verb, signed, request.query.get("sig", "")):
            raise web.HTTPForbidden(text="invalid or missing signature")
        return request.match_info["blob_id"].removeprefix("bl-")

    async def put_blob(request: web.Request) -> web.Response:
        sha = check(request, "put", request.match_info["blob_id"])
        md5 = hashlib.md5()
        try:
            with blobs.receiving(sha) as sink:
                async for chunk in request.content.iter_any():
                    if sink.size + len(chunk) > MAX_BLOB_BYTES:
                        raise web.HTTPRequestEntityTooLarge(max_size=MAX_BLOB_BYTES, actual_size=sink.size + len(chunk))
                    sink.write(chunk)
                    md5.update(chunk)
        except ValueError:
            raise web.HTTPBadRequest(text="content does not match the blob's sha256") from None
        return web.Response(status=200, headers={"ETag": f'"{md5.hexdigest()}"'})

    async def put_part(request: web.Request) -> web.Response:
        blob_id, number = request.match_info["blob_id"], request.match_info["number"]
        sha = check(request, "put-part", f"{blob_id}/{number}")
        md5 = hashlib.md5()
        with blobs.part(sha, int(number)) as f:
            async for chunk in request.content.iter_any():
                f.write(chunk)
                md5.update(chunk)
        return web.Response(status=200, headers={"ETag": f'"{md5.hexdigest()}"'})

    async def complete(request: web.Request) -> web.Response:
        blob_id, parts = request.match_info["blob_id"], request.query.get("parts", "")
        sha = check(request, "complete", f"{blob_id}/{parts}")
        try:
            etag = await asyncio.to_thread(blobs.assemble, sha, int(parts))
        except FileNotFoundError:
            raise web.HTTPBadRequest(text="a part of the upload is missing") from None
        except ValueError:
            raise web.HTTPBadRequest(text="content does not match the blob's sha256") from None
        body = f'<CompleteMultipartUploadResult><ETag>"{etag}"</ETag></CompleteMultipartUploadResult>'
        return web.Response(status=200, text=body, content_type="application/xml")

    async def get_blob(request: web.Request) -> web.StreamResponse:
        sha = check(request, "get", request.match_info["blob_id"])
        if not blobs.has(sha):
            raise web.HTTPNotFound(text=f"blob {request.match_info['blob_id']} not found")
        return web.FileResponse(blobs.path(sha))

    app = web.Application()
    app.router.add_put("/blobs/{blob_id}", put_blob)
    app.router.add_put(r"/blobs/{blob_id}/parts/{number:\d+}", put_part)
    app.router.add_post("/blobs/{blob_id}/complete", complete)
    app.router.add_get("/blobs/{blob_id}", get_blob)
    app.router.add_routes(routes)
    return app
