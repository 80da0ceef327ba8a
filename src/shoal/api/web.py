"""The web endpoints' HTTP side: a request's Host names the endpoint (`{label}.{domain}`); the
request becomes the endpoint's call (control/web_requests.py) and the ASGI app's messages become
the response, streamed as they come, or the messages of a WebSocket connection, both ways. A
server's requests go to its containers as they are (server_proxy.py)."""

import asyncio
import logging
from contextlib import aclosing

from aiohttp import WSMsgType, web
from modal_proto import api_pb2

from ..control.connect_tokens import LABEL_PREFIX as CONNECT_LABEL
from ..control.errors import NotFound, Unauthenticated
from ..control.web_requests import BODY_CHUNK, CallFailed, WebRequest, WebRequests
from .server_proxy import ServerProxy

log = logging.getLogger(__name__)

MAX_BODY = 1024**3  # a request body's largest
# Hop-by-hop headers are the connection's, not the app's: aiohttp sets its own.
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "upgrade", "te", "trailer"}


def web_app(requests: WebRequests, servers: ServerProxy) -> web.Application:
    async def serve(request: web.Request) -> web.StreamResponse:
        label = (request.host or "").rsplit(":", 1)[0].split(".", 1)[0].lower()
        if label.startswith(CONNECT_LABEL):
            return await servers.serve_sandbox(label, request)
        websocket = request.headers.get("Upgrade", "").lower() == "websocket"
        try:
            headers = {name.lower(): value for name, value in request.raw_headers}
            endpoint, revision = await requests.resolve(label, headers)
            if revision.definition.is_server:  # passed on as it came: no ASGI scope
                return await servers.serve(revision, request)
            call = await requests.open(label, _scope(request, websocket), (endpoint, revision))
        except NotFound as e:
            return web.Response(status=404, text=f"{e}\n")
        except Unauthenticated as e:
            return web.Response(status=401, text=f"This endpoint requires Modal-Key and Modal-Secret headers: {e}\n")
        answered = False
        try:
            if websocket:
                response = await _relay_websocket(requests, call, request)
            else:
                await _send_body(requests, call, request)
                response = await _respond(requests, call, request)
            answered = True
            return response
        finally:
            await requests.close(call, abandoned=not answered)

    async def close(_: web.Application) -> None:
        await servers.close()

    app = web.Application(client_max_size=0)
    app.router.add_route("*", "/{tail:.*}", serve)
    app.on_cleanup.append(close)
    return app


def _scope(request: web.Request, websocket: bool) -> dict:
    """The request's ASGI scope, HTTP or WebSocket, as the client's runtime reads it."""
    peer = request.transport.get_extra_info("peername") if request.transport else None
    scope = {
        "type": "websocket" if websocket else "http",
        "http_version": f"{request.version.major}.{request.version.minor}",
        "scheme": "ws" if websocket else "http",
        "path": request.path,
        "query_string": request.rel_url.raw_query_string.encode(),  # as sent: ASGI's is not decoded
        "headers": [(name.lower(), value) for name, value in request.raw_headers],
    }
    if websocket:
        offered = request.headers.get("Sec-WebSocket-Protocol", "")
        scope["subprotocols"] = [p.strip() for p in offered.split(",") if p.strip()]
    else:
        scope["method"] = request.method
    if peer:
        scope["client"] = (peer[0], peer[1])
    return scope


async def _send_body(requests: WebRequests, call: WebRequest, request: web.Request) -> None:
    """The request's body to the app as it comes; HTTPRequestEntityTooLarge past MAX_BODY (the
    server holds a body until its call ends)."""
    if not request.body_exists:
        requests.send_body(call, b"", more_body=False)
        return
    buffer, size = b"", 0
    async for chunk in request.content.iter_chunked(BODY_CHUNK):
        size += len(chunk)
        if size > MAX_BODY:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_BODY, actual_size=size)
        if buffer:
            requests.send_body(call, buffer, more_body=True)
        buffer = chunk
    requests.send_body(call, buffer, more_body=False)


async def _respond(requests: WebRequests, call: WebRequest, request: web.Request) -> web.StreamResponse:
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
    _add_headers(response, start.headers)
    await response.prepare(request)
    return response


def _add_headers(response: web.StreamResponse, flat: list[bytes]) -> None:
    """The app's headers (ASGI's, flattened: name, value, name, value, ...) but the connection's own."""
    for name, value in zip(flat[::2], flat[1::2]):
        text = name.decode("latin-1")
        if text.lower() not in HOP_BY_HOP:
            response.headers.add(text, value.decode("latin-1"))


async def _relay_websocket(requests: WebRequests, call: WebRequest, request: web.Request) -> web.StreamResponse:
    """A WebSocket connection the app accepts: the client's messages go to the app as they come,
    and the app's to the client, until either side closes."""
    requests.send(call, api_pb2.Asgi(websocket_connect=api_pb2.Asgi.WebsocketConnect()))
    ws: web.WebSocketResponse | None = None
    relay: asyncio.Task | None = None
    try:
        async with aclosing(requests.responses(call)) as messages:
            async for message in messages:
                kind = message.WhichOneof("type")
                if ws is None:
                    if kind != "websocket_accept":
                        break
                    accept = message.websocket_accept
                    ws = web.WebSocketResponse(protocols=[accept.subprotocol] if accept.HasField("subprotocol") else ())
                    _add_headers(ws, accept.headers)
                    await ws.prepare(request)
                    relay = asyncio.create_task(_to_app(requests, call, ws))
                elif kind == "websocket_send":
                    sent = message.websocket_send
                    await (ws.send_str(sent.text) if sent.HasField("text") else ws.send_bytes(sent.bytes))
                elif kind == "websocket_close":
                    closing = message.websocket_close
                    code = closing.code if closing.HasField("code") else 1000
                    await ws.close(code=code, message=closing.reason.encode())
                    break
    except CallFailed as e:
        log.info("web endpoint %s failed: %s", call.label, e)
        if ws is not None:
            await ws.close(code=1011, message=b"the app failed")
    finally:
        if relay is not None:
            relay.cancel()
    if ws is None:
        return web.Response(status=403, text="The web endpoint's app did not accept the WebSocket connection\n")
    await ws.close()
    return ws


async def _to_app(requests: WebRequests, call: WebRequest, ws: web.WebSocketResponse) -> None:
    async for message in ws:
        if message.type == WSMsgType.TEXT:
            requests.send(call, api_pb2.Asgi(websocket_receive=api_pb2.Asgi.WebsocketReceive(text=message.data)))
        elif message.type == WSMsgType.BINARY:
            requests.send(call, api_pb2.Asgi(websocket_receive=api_pb2.Asgi.WebsocketReceive(bytes=message.data)))
    code = ws.close_code or 1005
    requests.send(call, api_pb2.Asgi(websocket_disconnect=api_pb2.Asgi.WebsocketDisconnect(code=code)))
