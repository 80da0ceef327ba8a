"""A server's requests (`@app.server`, control/servers.py) passed on to one of its containers: the
request as it came, less the proxy auth headers and the connection's own, its body and the answer
streamed both ways; a WebSocket connection is passed on as one."""

import asyncio
import logging
from contextlib import suppress

from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector, WSMsgType, web
from multidict import CIMultiDict
from yarl import URL

from ..control.functions import Revision
from ..control.servers import AtCapacity, Backend, NoServer, Servers
from ..control.web_requests import PROXY_AUTH_HEADERS

log = logging.getLogger(__name__)

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "upgrade", "te", "trailer", "proxy-connection"}
# A request waits this long beyond the server's startup_timeout for a container to be ready.
COLD_START_MARGIN = 60.0
_DROPPED = HOP_BY_HOP | {name.decode() for name in PROXY_AUTH_HEADERS}
_WEBSOCKET_OWN = ("sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions", "sec-websocket-protocol")


class ServerProxy:
    def __init__(self, servers: Servers):
        self.servers = servers
        self._session: ClientSession | None = None

    def session(self) -> ClientSession:
        if self._session is None:
            # No total timeout: a server's answer may stream for as long as it likes. Bodies pass as they
            # are. No bound on connections: max_concurrency bounds the requests to a container.
            self._session = ClientSession(
                connector=TCPConnector(limit=0),
                timeout=ClientTimeout(total=None, sock_connect=10),
                auto_decompress=False,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def serve(self, revision: Revision, request: web.Request) -> web.StreamResponse:
        http = revision.definition.http_config
        wait = (http.startup_timeout or revision.definition.startup_timeout_secs) + COLD_START_MARGIN
        try:
            async with self.servers.request(revision, wait) as backend:
                if request.headers.get("Upgrade", "").lower() == "websocket":
                    return await self._websocket(backend, request)
                return await self._http(backend, request)
        except AtCapacity:
            return web.Response(status=429, text="Every container of this server is at its max_concurrency\n")
        except NoServer:
            return web.Response(status=503, text="No container of this server was ready in time\n")

    async def _http(self, backend: Backend, request: web.Request) -> web.StreamResponse:
        response: web.StreamResponse | None = None
        try:
            async with self.session().request(
                request.method,
                _url(backend, request, "http"),
                headers=_headers(request),
                data=request.content if request.body_exists else None,
                allow_redirects=False,
            ) as upstream:
                response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
                for name, value in upstream.headers.items():
                    if name.lower() not in HOP_BY_HOP:
                        response.headers.add(name, value)
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
                return response
        except ClientError as e:
            log.info("server container %s: %s", backend.task.task_id, e)
            if response is not None:
                response.force_close()  # the body was cut short: the client must not take it as whole
                return response
            return web.Response(status=502, text=f"The server's container did not answer: {e}\n")

    async def _websocket(self, backend: Backend, request: web.Request) -> web.StreamResponse:
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        headers = CIMultiDict((k, v) for k, v in _headers(request).items() if k.lower() not in _WEBSOCKET_OWN)
        try:
            upstream = await self.session().ws_connect(
                _url(backend, request, "ws"), headers=headers, protocols=offered, autoclose=False
            )
        except ClientError as e:
            return web.Response(status=502, text=f"The server's container did not accept the connection: {e}\n")
        async with upstream:
            downstream = web.WebSocketResponse(protocols=[upstream.protocol] if upstream.protocol else ())
            await downstream.prepare(request)
            relays = [
                asyncio.create_task(_relay(upstream, downstream)),
                asyncio.create_task(_relay(downstream, upstream)),
            ]
            await asyncio.wait(relays, return_when=asyncio.FIRST_COMPLETED)
            for relay in relays:
                relay.cancel()
            code = upstream.close_code or downstream.close_code or 1000
            await downstream.close(code=code)
            await upstream.close(code=code)
        return downstream


def _url(backend: Backend, request: web.Request, scheme: str) -> URL:
    return URL(f"{scheme}://{backend.host}:{backend.port}{request.raw_path}", encoded=True)


def _headers(request: web.Request) -> CIMultiDict[str]:
    """The request's headers as the container's server should see them: Host as the client sent it,
    and where the request came from in X-Forwarded-*."""
    kept = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in _DROPPED)
    kept.extend(
        {"X-Forwarded-For": request.remote or "", "X-Forwarded-Proto": request.scheme, "X-Forwarded-Host": request.host}
    )
    return kept


async def _relay(source, sink) -> None:
    async for message in source:
        if message.type == WSMsgType.TEXT:
            await sink.send_str(message.data)
        elif message.type == WSMsgType.BINARY:
            await sink.send_bytes(message.data)
        elif message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            break
    with suppress(ConnectionError):
        await sink.close(code=source.close_code or 1000)
