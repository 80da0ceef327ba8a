"""Requests passed on to a port a container listens on, as they came: a server's (`@app.server`,
control/servers.py) to one of its containers, and those bearing a sandbox's connect token
(control/connect_tokens.py) to that sandbox. Proxy auth headers and the connection's own are
dropped; the body and the answer are streamed both ways; a WebSocket connection is passed on as
one."""

import asyncio
import logging
from contextlib import suppress

from aiohttp import ClientError, ClientSession, ClientTimeout, TCPConnector, WSMsgType, web
from multidict import CIMultiDict
from yarl import URL

from ..control.connect_tokens import ConnectTokens
from ..control.errors import NotFound, Unauthenticated
from ..control.functions import Revision
from ..control.servers import AtCapacity, NoServer, Servers
from ..control.web_requests import PROXY_AUTH_HEADERS
from ..runtime import ContainerError
from ..worker.tls_forward import peer_in

log = logging.getLogger(__name__)

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "upgrade", "te", "trailer", "proxy-connection"}
# A request waits this long beyond the server's startup_timeout for a container to be ready.
COLD_START_MARGIN = 60.0
CONNECT_TOKEN = "_modal_connect_token"  # the query parameter and cookie that may carry a connect token
VERIFIED = "X-Verified-User-Data"  # a connect token's user metadata, as shoal vouches for it
_DROPPED = HOP_BY_HOP | {name.decode() for name in PROXY_AUTH_HEADERS}
_WEBSOCKET_OWN = ("sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions", "sec-websocket-protocol")


class ServerProxy:
    def __init__(self, servers: Servers, connect_tokens: ConnectTokens | None = None):
        self.servers = servers
        self.connect_tokens = connect_tokens
        self._session: ClientSession | None = None

    def session(self) -> ClientSession:
        if self._session is None:
            # No total timeout: an answer may stream for as long as it likes. Bodies pass as they are.
            # No bound on connections: a server's max_concurrency bounds the requests to a container.
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
        """A request to a server, passed on to its least busy ready container."""
        http = revision.definition.http_config
        wait = (http.startup_timeout or revision.definition.startup_timeout_secs) + COLD_START_MARGIN
        try:
            async with self.servers.request(revision, wait) as backend:
                return await self._pass_on(backend.host, backend.port, request, _headers(request))
        except AtCapacity:
            return web.Response(status=429, text="Every container of this server is at its max_concurrency\n")
        except NoServer as e:
            return web.Response(status=503, text=f"{e or 'No container of this server was ready in time'}\n")

    async def serve_sandbox(self, label: str, request: web.Request) -> web.StreamResponse:
        """A request bearing a sandbox's connect token, passed on to the port the token names."""
        token, from_query = _connect_token(request)
        try:
            connection = self.connect_tokens.connection(label, token)
            if connection.inbound is not None and not peer_in(request.remote or "", connection.inbound):
                return web.Response(status=403, text="The sandbox takes no connections from this address\n")
            host, port = await self.servers.reach(connection.task_id, connection.port)
        except Unauthenticated as e:
            return web.Response(status=401, text=f"{e}\n")
        except NotFound as e:
            return web.Response(status=404, text=f"{e}\n")
        except ContainerError as e:
            return web.Response(status=502, text=f"The sandbox's port {connection.port} is out of reach: {e}\n")
        headers = _headers(request)
        if request.headers.get("Authorization", "").lower().startswith("bearer "):
            headers.popall("Authorization")  # the token is shoal's, not the sandbox's
        headers.popall(VERIFIED, None)
        headers[VERIFIED] = connection.user_metadata or "{}"
        # A token in the query is kept in a cookie, so that a browser's next requests carry it too.
        cookie = {"Set-Cookie": f"{CONNECT_TOKEN}={token}; Path=/; HttpOnly; SameSite=Lax"} if from_query else {}
        return await self._pass_on(host, port, request, headers, cookie)

    async def _pass_on(
        self, host: str, port: int, request: web.Request, headers: CIMultiDict[str], extra: dict[str, str] = {}
    ) -> web.StreamResponse:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(host, port, request, headers)
        return await self._http(host, port, request, headers, extra)

    async def _http(
        self, host: str, port: int, request: web.Request, headers: CIMultiDict[str], extra: dict[str, str]
    ) -> web.StreamResponse:
        response: web.StreamResponse | None = None
        try:
            async with self.session().request(
                request.method,
                _url(host, port, request, "http"),
                headers=headers,
                data=request.content if request.body_exists else None,
                allow_redirects=False,
            ) as upstream:
                response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
                for name, value in [*upstream.headers.items(), *extra.items()]:
                    if name.lower() not in HOP_BY_HOP:
                        response.headers.add(name, value)
                await response.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
                return response
        except ClientError as e:
            log.info("container at %s:%d: %s", host, port, e)
            if response is not None:
                response.force_close()  # the body was cut short: the client must not take it as whole
                return response
            return web.Response(status=502, text=f"The container did not answer: {e}\n")

    async def _websocket(
        self, host: str, port: int, request: web.Request, headers: CIMultiDict[str]
    ) -> web.StreamResponse:
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        passed = CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in _WEBSOCKET_OWN)
        try:
            upstream = await self.session().ws_connect(
                _url(host, port, request, "ws"), headers=passed, protocols=offered, autoclose=False
            )
        except ClientError as e:
            return web.Response(status=502, text=f"The container did not accept the connection: {e}\n")
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


def _url(host: str, port: int, request: web.Request, scheme: str) -> URL:
    return URL(f"{scheme}://{host}:{port}{request.raw_path}", encoded=True)


def _headers(request: web.Request) -> CIMultiDict[str]:
    """The request's headers as the container's server should see them: Host as the client sent it,
    and where the request came from in X-Forwarded-*."""
    kept = CIMultiDict((k, v) for k, v in request.headers.items() if k.lower() not in _DROPPED)
    kept.extend(
        {"X-Forwarded-For": request.remote or "", "X-Forwarded-Proto": request.scheme, "X-Forwarded-Host": request.host}
    )
    return kept


def _connect_token(request: web.Request) -> tuple[str, bool]:
    """The connect token a request bears, and whether it came in the query."""
    authorization = request.headers.get("Authorization", "")
    if authorization.lower().startswith("bearer "):
        return authorization[7:].strip(), False
    if token := request.query.get(CONNECT_TOKEN):
        return token, True
    return request.cookies.get(CONNECT_TOKEN, ""), False


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
