"""The web endpoints' HTTP side: a request's Host names the endpoint (`{label}.{domain}`); the
request becomes the endpoint's call (control/web_requests.py) and the ASGI app's messages become
the response, streamed as they come."""

import logging
from contextlib import aclosing

from aiohttp import web
from modal_proto import api_pb2

from ..control.errors import NotFound, Unauthenticated
from ..control.web_requests import BODY_CHUNK, CallFailed, WebRequests

log = logging.getLogger(__name__)

# Hop-by-hop headers are the connection's, not the app's: aiohttp sets its own.
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "upgrade", "te", "trailer"}


def web_app(requests: WebRequests) -> web.Application:
    async def serve(request: web.Request) -> web.StreamResponse:
        label = (request.host or "").rsplit(":", 1)[0].split(".", 1)[0].lower()
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return web.Response(status=501, text="shoal does not serve WebSocket connections to web endpoints yet\n")
        try:
            call = await requests.open(label, _scope(request))
        except NotFound as e:
            return web.Response(status=404, text=f"{e}\n")
        except Unauthenticated as e:
            return web.Response(status=401, text=f"This endpoint requires Modal-Key and Modal-Secret headers: {e}\n")
        answered = False
        try:
            await _send_body(requests, call, request)
            response = await _respond(requests, call, request)
            answered = True
            return response
        finally:
            await requests.close(call, abandoned=not answered)

    app = web.Application(client_max_size=0)
    app.router.add_route("*", "/{tail:.*}", serve)
    return app


def _scope(request: web.Request) -> dict:
    """The request's ASGI HTTP scope, as the client's runtime reads it."""
    peer = request.transport.get_extra_info("peername") if request.transport else None
    scope = {
        "type": "http",
        "http_version": f"{request.version.major}.{request.version.minor}",
        "method": request.method,
        "scheme": "http",
        "path": request.path,
        "query_string": request.query_string.encode(),
        "headers": [(name.lower(), value) for name, value in request.raw_headers],
    }
    if peer:
        scope["client"] = (peer[0], peer[1])
    return scope


async def _send_body(requests: WebRequests, call, request: web.Request) -> None:
    if not request.body_exists:
        requests.send_body(call, b"", more_body=False)
        return
    buffer = b""
    async for chunk in request.content.iter_chunked(BODY_CHUNK):
        if buffer:
            requests.send_body(call, buffer, more_body=True)
        buffer = chunk
    requests.send_body(call, buffer, more_body=False)


async def _respond(requests: WebRequests, call, request: web.Request) -> web.StreamResponse:
    response: web.StreamResponse | None = None
    try:
        async with aclosing(requests.responses(call)) as messages:
            async for message in messages:
                kind = message.WhichOneof("type")
                if kind == "http_response_start" and response is None:
                    response = await _start(message.http_response_start, request)
                elif kind == "http_response_body" and response is not None:
                    await response.write(message.http_response_body.body)
                    if not message.http_response_body.more_body:
                        await response.write_eof()
                        return response
    except CallFailed as e:
        log.info("web endpoint %s failed: %s", call.label, e)
        if response is None:
            return web.Response(status=500, text="Internal Server Error\n")
    if response is None:
        return web.Response(status=502, text="The web endpoint's app sent no response\n")
    response.force_close()  # the app ended without finishing its body: the client must not take it as whole
    return response


async def _start(start: api_pb2.Asgi.HttpResponseStart, request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(status=start.status)
    headers = list(zip(start.headers[::2], start.headers[1::2]))
    for name, value in headers:
        text = name.decode("latin-1")
        if text.lower() not in HOP_BY_HOP:
            response.headers.add(text, value.decode("latin-1"))
    await response.prepare(request)
    return response
