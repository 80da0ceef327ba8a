"""Admin HTTP routes for the `shoal` command line: the worker pool; image listing, usage, bootstrap,
import and garbage collection.

Callers authenticate with an API token (the headers the modal client sends over gRPC); an
import from the server's machine also needs the host proof (api/host_proof.py).
"""

import hmac
from dataclasses import asdict

from aiohttp import web

from ..control.errors import Unauthenticated
from ..control.image_report import list_images, usage
from ..control.platform import Platform
from ..images.builder import BuildError
from ..images.imported import ImportFailed
from . import host_proof

TOKEN_ID_HEADER = "x-modal-token-id"
TOKEN_SECRET_HEADER = "x-modal-token-secret"


def admin_routes(platform: Platform, proof: str) -> list[web.RouteDef]:
    async def authenticated(request: web.Request) -> None:
        try:
            await platform.tokens.verify(
                request.headers.get(TOKEN_ID_HEADER, ""), request.headers.get(TOKEN_SECRET_HEADER, "")
            )
        except Unauthenticated as e:
            raise web.HTTPUnauthorized(text=str(e)) from None

    async def images(request: web.Request) -> web.Response:
        await authenticated(request)
        rows = await list_images(platform.db, platform.layers)
        return web.json_response([asdict(row) for row in rows])

    async def images_usage(request: web.Request) -> web.Response:
        await authenticated(request)
        image_ids = request.query.getall("image_id", []) or None
        return web.json_response((await usage(platform.db, platform.layers, image_ids)).to_dict())

    async def images_gc(request: web.Request) -> web.Response:
        await authenticated(request)
        return web.json_response(asdict(await platform.images.collect()))

    async def images_bootstrap(request: web.Request) -> web.Response:
        await authenticated(request)
        lines: list[str] = []
        try:
            built = await platform.images.bootstrap(lines.append)
        except BuildError as e:
            raise web.HTTPInternalServerError(text=f"{e}\n{''.join(lines)[-4000:]}") from None
        return web.json_response(
            [{"name": ref, "layer_ids": image.layers, "python": image.config.python_version} for ref, image in built]
        )

    async def images_import(request: web.Request) -> web.Response:
        await authenticated(request)
        if not hmac.compare_digest(request.headers.get(host_proof.HEADER, ""), proof):
            raise web.HTTPForbidden(
                text="Importing a directory of the server's machine takes its owner: run `shoal images import` "
                "there, as the user that runs shoal (it reads SHOAL_HOME/server.secret)"
            )
        query = request.query
        if "name" not in query or "source" not in query:
            raise web.HTTPBadRequest(text="An import needs name= and source=")
        try:
            image = await platform.images.import_rootfs(query["name"], query["source"], query.get("python"))
        except ImportFailed as e:
            raise web.HTTPBadRequest(text=str(e)) from None
        return web.json_response(
            {"layer_ids": image.layers, "python": image.config.python_version, "copied": image.built}
        )

    async def workers(request: web.Request) -> web.Response:
        await authenticated(request)
        return web.json_response(platform.workers.report())

    return [
        web.get("/admin/workers", workers),
        web.get("/admin/images", images),
        web.post("/admin/images/bootstrap", images_bootstrap),
        web.post("/admin/images/import", images_import),
        web.get("/admin/images/usage", images_usage),
        web.post("/admin/images/gc", images_gc),
    ]
