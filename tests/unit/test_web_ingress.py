"""The web endpoints' HTTP side: a request as its ASGI scope and body, the app's messages as the
response, with the calls behind it played by the test."""

from types import SimpleNamespace

import pytest
from aiohttp.test_utils import TestClient, TestServer
from modal_proto import api_pb2

from shoal.api import web as ingress
from shoal.api.server_proxy import ServerProxy
from shoal.control.errors import NotFound
from shoal.control.web_requests import CallFailed, WebRequest

Asgi = api_pb2.Asgi


class Calls:
    """Plays WebRequests: records what the ingress sends and answers with the given messages."""

    def __init__(self, *messages: Asgi, failure: str = ""):
        self.messages, self.failure = messages, failure
        self.scope: dict = {}
        self.body: list[tuple[bytes, bool]] = []
        self.closed: list[bool] = []

    async def resolve(self, label: str, headers: dict) -> tuple[None, SimpleNamespace]:
        if label != "shoal--app-web":
            raise NotFound(f"No web endpoint is served at '{label}'")
        return None, SimpleNamespace(definition=api_pb2.Function())  # a function's, not a server's

    async def open(self, label: str, scope: dict, target) -> WebRequest:
        self.scope = scope
        return WebRequest(None, label, scope["type"] == "websocket")

    def send_body(self, request: WebRequest, body: bytes, more_body: bool) -> None:
        self.body.append((body, more_body))

    async def responses(self, request: WebRequest):
        for message in self.messages:
            yield message
        if self.failure:
            raise CallFailed(self.failure)

    async def close(self, request: WebRequest, abandoned: bool) -> None:
        self.closed.append(abandoned)


def start(status: int, *headers: bytes) -> Asgi:
    return Asgi(http_response_start=Asgi.HttpResponseStart(status=status, headers=list(headers)))


def body(data: bytes, more: bool = False) -> Asgi:
    return Asgi(http_response_body=Asgi.HttpResponseBody(body=data, more_body=more))


async def send(calls: Calls, path: str = "/", host: str = "shoal--app-web.localhost:7472", **kwargs):
    async with TestClient(TestServer(ingress.web_app(calls, ServerProxy(None)))) as client:
        response = await client.request(kwargs.pop("method", "GET"), path, headers={"Host": host}, **kwargs)
        return response.status, response.headers, await response.read()


async def test_a_request_is_its_scope_and_body_and_the_apps_messages_its_response():
    calls = Calls(
        start(201, b"set-cookie", b"a=1", b"set-cookie", b"b=2", b"transfer-encoding", b"chunked"),
        body(b"one ", more=True),
        body(b"two"),
    )
    status, headers, content = await send(calls, "/p%20q?x=a%20b", method="POST", data=b"payload")
    assert (status, content, headers.getall("Set-Cookie")) == (201, b"one two", ["a=1", "b=2"])
    seen = calls.scope
    assert (seen["type"], seen["method"], seen["path"], seen["query_string"]) == ("http", "POST", "/p q", b"x=a%20b")
    assert (b"host", b"shoal--app-web.localhost:7472") in seen["headers"]
    assert calls.body == [(b"payload", False)] and calls.closed == [False]


async def test_a_body_past_the_limit_is_refused_and_its_call_cancelled(monkeypatch):
    monkeypatch.setattr(ingress, "MAX_BODY", 10)
    calls = Calls(start(200), body(b"never"))
    status, _, _ = await send(calls, method="POST", data=b"x" * 11)
    assert status == 413 and calls.closed == [True]


@pytest.mark.parametrize(
    "calls, status",
    [
        (Calls(failure="boom"), 500),  # the app failed before answering
        (Calls(), 502),  # it ended without answering
    ],
)
async def test_an_app_that_does_not_answer(calls, status):
    assert (await send(calls))[0] == status


async def test_a_host_that_names_no_endpoint():
    status, _, content = await send(Calls(), host="shoal--nothing.localhost:7472")
    assert status == 404 and b"No web endpoint is served at 'shoal--nothing'" in content
