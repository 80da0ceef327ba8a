"""A server's requests passed on to a container's HTTP server as they came (api/server_proxy.py),
with aiohttp servers standing for the container's and a fake Servers choosing it."""

import contextlib
import json
from types import SimpleNamespace

from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer
from modal_proto import api_pb2

from shoal.api.server_proxy import ServerProxy
from shoal.api.web import web_app
from shoal.control.errors import NotFound
from shoal.control.servers import AtCapacity, Backend, NoServer

SERVER = SimpleNamespace(definition=api_pb2.Function(is_server=True))


class Requests:
    """Plays WebRequests: every label is the server's."""

    async def resolve(self, label: str, headers: dict):
        if label != "shoal--app-web":
            raise NotFound(f"No web endpoint is served at '{label}'")
        return None, SERVER


class Servers:
    """Plays control.servers.Servers: every request goes to the one backend, or fails as told."""

    def __init__(self, port: int, failure: Exception | None = None):
        self.backend = Backend(SimpleNamespace(task_id="ta-1"), "127.0.0.1", port)
        self.failure = failure

    @contextlib.asynccontextmanager
    async def request(self, revision, wait: float):
        if self.failure:
            raise self.failure
        self.backend.in_flight += 1
        try:
            yield self.backend
        finally:
            self.backend.in_flight -= 1


async def container_app() -> web.Application:
    async def echo(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        response = web.StreamResponse(status=207, headers={"X-App": "yes"})
        await response.prepare(request)
        await response.write(json.dumps({"method": request.method, "raw_path": request.raw_path}).encode() + b"\n")
        await response.write(json.dumps(dict(request.headers)).encode() + b"\n")
        await response.write(body[::-1])
        return response

    async def socket(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(protocols=("chat.v1",))
        await ws.prepare(request)
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                await ws.send_str(message.data.upper())
            elif message.type == WSMsgType.BINARY:
                await ws.send_bytes(message.data[::-1])
                await ws.close(code=4000)
        return ws

    app = web.Application()
    app.router.add_route("GET", "/ws", socket)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


@contextlib.asynccontextmanager
async def proxied(failure: Exception | None = None):
    async with TestServer(await container_app()) as container:
        servers = Servers(container.port, failure)
        async with TestClient(TestServer(web_app(Requests(), ServerProxy(servers)))) as client:
            yield client, servers


HOST = {"Host": "shoal--app-web.localhost:7472"}


async def test_a_request_reaches_the_container_as_it_came_and_its_answer_streams_back():
    async with proxied() as (client, servers):
        headers = {**HOST, "Modal-Key": "ak", "Modal-Secret": "as", "X-Mine": "1"}
        response = await client.post("/a%20b/c?x=1&y=%26", data=b"hello", headers=headers)
        assert (response.status, response.headers["X-App"]) == (207, "yes")
        first, second, body = (await response.read()).split(b"\n", 2)
    assert json.loads(first) == {"method": "POST", "raw_path": "/a%20b/c?x=1&y=%26"}
    seen = json.loads(second)
    assert seen["Host"] == HOST["Host"] and seen["X-Mine"] == "1" and seen["X-Forwarded-For"] == "127.0.0.1"
    assert "Modal-Key" not in seen and "Modal-Secret" not in seen  # shoal's token, not the server's
    assert body == b"olleh"
    assert servers.backend.in_flight == 0


async def test_websockets_are_relayed_both_ways():
    async with proxied() as (client, _):
        async with client.ws_connect("/ws", headers=HOST, protocols=("chat.v1",)) as ws:
            await ws.send_str("hello")
            assert await ws.receive_str(timeout=10) == "HELLO"
            await ws.send_bytes(b"\x01\x02")
            assert await ws.receive_bytes(timeout=10) == b"\x02\x01"
            closed = await ws.receive(timeout=10)
            assert (ws.protocol, closed.type, ws.close_code) == ("chat.v1", WSMsgType.CLOSE, 4000)


async def test_no_container_at_capacity_and_unreachable_ones_have_answers_of_their_own():
    async with proxied(AtCapacity()) as (client, _):
        assert (await client.get("/", headers=HOST)).status == 429
    async with proxied(NoServer()) as (client, _):
        assert (await client.get("/", headers=HOST)).status == 503
    async with proxied() as (client, servers):
        servers.backend.port = 1  # nothing listens there
        response = await client.get("/", headers=HOST)
        assert response.status == 502 and "did not answer" in await response.text()
