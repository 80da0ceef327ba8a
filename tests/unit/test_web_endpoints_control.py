"""Web endpoints: the labels they are served at, who holds a label, and an HTTP request as a call."""

import asyncio
import pickle

import pytest
from modal_proto import api_pb2

from shoal.control.apps import Apps
from shoal.control.calls import Calls
from shoal.control.errors import AlreadyExists, NotFound, Unauthenticated
from shoal.control.functions import Revision
from shoal.control.tokens import Tokens
from shoal.control.web_endpoints import LABEL_LIMIT, WebEndpoints, label_for
from shoal.control.web_requests import BODY_CHUNK, CallFailed, WebRequests
from shoal.store.blobs import BlobStore

Config = api_pb2.WebhookConfig
ASGI_APP = Config(type=api_pb2.WEBHOOK_TYPE_ASGI_APP)
Result = api_pb2.GenericResult


@pytest.mark.parametrize(
    "environment, function_name, config, deployed, label",
    [
        ("main", "greet", ASGI_APP, True, "shoal--my-app-greet"),
        ("main", "Counter.web", ASGI_APP, True, "shoal--my-app-counter-web"),  # a class's method
        ("staging", "greet", ASGI_APP, True, "shoal-staging--my-app-greet"),
        (
            "main",
            "greet",
            Config(type=api_pb2.WEBHOOK_TYPE_FUNCTION, requested_suffix="Hi_There"),
            True,
            "shoal--hi-there",
        ),
        ("main", "greet", ASGI_APP, False, "shoal--my-app-greet-dev"),
        (
            "main",
            "greet",
            Config(type=api_pb2.WEBHOOK_TYPE_ASGI_APP, ephemeral_suffix="alice"),
            False,
            "shoal--my-app-greet-alice",
        ),
    ],
)
def test_labels_are_named_as_modal_names_them(environment, function_name, config, deployed, label):
    assert label_for(environment, "My_App", function_name, config, deployed) == (label, False)


def test_a_long_label_is_shortened_to_a_dns_label_with_a_hash_that_tells_it_apart():
    one, truncated = label_for("main", "a" * 80, "one", ASGI_APP, False)
    other, _ = label_for("main", "a" * 80, "two", ASGI_APP, False)
    assert truncated and len(one) == len(other) == LABEL_LIMIT
    assert one.endswith("-dev") and one != other


def endpoint_definition(name: str = "web", label: str = "") -> api_pb2.Function:
    config = Config(type=api_pb2.WEBHOOK_TYPE_ASGI_APP, requested_suffix=label)
    return api_pb2.Function(function_name=name, webhook_config=config)


async def new_app(apps: Apps, name: str, state: int) -> str:
    app = await apps.create("", name, api_pb2.APP_STATE_EPHEMERAL if state != api_pb2.APP_STATE_INITIALIZING else state)
    if state not in (api_pb2.APP_STATE_EPHEMERAL, api_pb2.APP_STATE_INITIALIZING):
        await apps.publish(app.app_id, name, state)
    return app.app_id


async def test_a_deployed_apps_label_is_its_own_and_others_are_taken_over(db):
    apps = Apps(db)
    endpoints = WebEndpoints(db, apps, lambda label: f"http://{label}.example.com")
    deployed = await new_app(apps, "owner", api_pb2.APP_STATE_DEPLOYED)
    named = await endpoints.with_urls(deployed, endpoint_definition(label="shared"))
    assert named.web_url == "http://shoal--shared.example.com" and not named.web_url_info.label_stolen
    await endpoints.claim("fu-owner", deployed, named)
    assert (await endpoints.find("shoal--shared")).function_id == "fu-owner"

    other = await new_app(apps, "other", api_pb2.APP_STATE_INITIALIZING)  # a first deploy
    with pytest.raises(AlreadyExists, match="'shoal--shared' belongs to the deployed app 'owner'"):
        await endpoints.with_urls(other, endpoint_definition(label="shared"))
    redeploy = await endpoints.with_urls(deployed, endpoint_definition(label="shared"))
    assert redeploy.web_url == named.web_url

    first = await new_app(apps, "dev", api_pb2.APP_STATE_EPHEMERAL)
    await endpoints.claim("fu-first", first, await endpoints.with_urls(first, endpoint_definition()))
    second = await new_app(apps, "dev", api_pb2.APP_STATE_EPHEMERAL)
    stolen = await endpoints.with_urls(second, endpoint_definition())
    assert stolen.web_url == "http://shoal--dev-web-dev.example.com" and stolen.web_url_info.label_stolen
    await endpoints.claim("fu-second", second, stolen)
    assert (await endpoints.find("shoal--dev-web-dev")).function_id == "fu-second"

    await apps.mark_stopped(second)
    third = await new_app(apps, "dev", api_pb2.APP_STATE_EPHEMERAL)
    assert not (await endpoints.with_urls(third, endpoint_definition())).web_url_info.label_stolen
    with pytest.raises(NotFound, match="No web endpoint is served at 'shoal--nothing'"):
        await endpoints.find("shoal--nothing")


async def test_a_class_method_endpoint_routes_to_its_method(db):
    apps = Apps(db)
    endpoints = WebEndpoints(db, apps, lambda label: f"http://{label}.localhost")
    app_id = await new_app(apps, "app", api_pb2.APP_STATE_DEPLOYED)
    definition = api_pb2.Function(
        function_name="Counter.*",
        method_definitions={
            "web": api_pb2.MethodDefinition(function_name="Counter.web", webhook_config=ASGI_APP),
            "plain": api_pb2.MethodDefinition(function_name="Counter.plain"),
        },
    )
    named = await endpoints.with_urls(app_id, definition)
    assert named.method_definitions["web"].web_url == "http://shoal--app-counter-web.localhost"
    assert not named.web_url and not named.method_definitions["plain"].web_url
    await endpoints.claim("fu-class", app_id, named)
    found = await endpoints.find("shoal--app-counter-web")
    assert (found.function_id, found.method_name) == ("fu-class", "web")


class Harness:
    """WebRequests over a real store and call queue; the test plays the container."""

    def __init__(self, db, tmp_path, config: api_pb2.WebhookConfig = ASGI_APP):
        self.apps = Apps(db)
        self.endpoints = WebEndpoints(db, self.apps, lambda label: f"http://{label}.localhost")
        self.calls = Calls(db, lambda revision_id: api_pb2.FunctionRetryPolicy())
        self.tokens = Tokens(db)
        self.definition = endpoint_definition()
        self.definition.webhook_config.CopyFrom(config)
        self.cancelled: list[str] = []
        self.requests = WebRequests(
            self.endpoints, self.calls, BlobStore(str(tmp_path / "blobs")), self.tokens, self.target, self.cancel
        )

    async def target(self, function_id: str) -> Revision:
        return Revision("rv-web", function_id, "ap-web", self.definition)

    async def cancel(self, call_id: str) -> None:
        self.cancelled.append(call_id)
        await self.calls.cancel(call_id)

    async def deploy(self) -> None:
        app_id = await new_app(self.apps, "app", api_pb2.APP_STATE_DEPLOYED)
        await self.endpoints.claim("fu-web", app_id, await self.endpoints.with_urls(app_id, self.definition))

    async def take_input(self):
        [taken] = await self.calls.next_inputs("rv-web", "ta-1", 1, 1, asyncio.Event())
        return taken

    async def answer(self, call_id: str, input_id: str, *messages: api_pb2.Asgi, status=Result.GENERIC_STATUS_SUCCESS):
        chunks = [
            api_pb2.DataChunk(data_format=api_pb2.DATA_FORMAT_ASGI, data=m.SerializeToString(), index=i + 1)
            for i, m in enumerate(messages)
        ]
        await self.calls.put_data_out("ta-1", call_id, chunks)
        await self.calls.put_output("ta-1", input_id, Result(status=status, exception="boom"), 0)


SCOPE = {"type": "http", "method": "POST", "path": "/", "query_string": b"", "headers": [(b"user-agent", b"t")]}
START = api_pb2.Asgi(http_response_start=api_pb2.Asgi.HttpResponseStart(status=200, headers=[b"a", b"b"]))
BODY = api_pb2.Asgi(http_response_body=api_pb2.Asgi.HttpResponseBody(body=b"hi"))


async def test_a_request_is_a_call_with_the_scope_its_body_in_and_the_apps_messages_out(db, tmp_path):
    harness = Harness(db, tmp_path)
    await harness.deploy()
    request = await harness.requests.open("shoal--app-web", dict(SCOPE))
    harness.requests.send_body(request, b"x" * (2 * BODY_CHUNK + 1), more_body=False)
    taken = await harness.take_input()
    assert pickle.loads(taken.input.args) == ((SCOPE,), {})
    sent = [api_pb2.Asgi.FromString(c.data).http_request for c in request.call.data_in]
    assert [c.index for c in request.call.data_in] == [1, 2, 3]
    assert [(len(m.body), m.more_body) for m in sent] == [(BODY_CHUNK, True), (BODY_CHUNK, True), (1, False)]

    await harness.answer(request.call.call_id, taken.input_id, START, BODY)
    assert [m async for m in harness.requests.responses(request)] == [START, BODY]
    await harness.requests.close(request, abandoned=False)
    assert request.call.call_id not in harness.calls.calls and not harness.cancelled
    await harness.calls.flush()


async def test_a_failed_call_and_an_abandoned_request(db, tmp_path):
    harness = Harness(db, tmp_path)
    await harness.deploy()
    failing = await harness.requests.open("shoal--app-web", dict(SCOPE))
    taken = await harness.take_input()
    await harness.answer(failing.call.call_id, taken.input_id, status=Result.GENERIC_STATUS_FAILURE)
    with pytest.raises(CallFailed, match="boom"):
        [m async for m in harness.requests.responses(failing)]

    abandoned = await harness.requests.open("shoal--app-web", dict(SCOPE))
    await harness.take_input()
    await harness.requests.close(abandoned, abandoned=True)
    assert harness.cancelled == [abandoned.call.call_id]
    last = api_pb2.Asgi.FromString(abandoned.call.data_in[-1].data)
    assert last.WhichOneof("type") == "http_disconnect"
    await harness.calls.flush()


async def test_proxy_auth_takes_a_token_and_the_app_never_sees_it(db, tmp_path):
    harness = Harness(db, tmp_path, Config(type=api_pb2.WEBHOOK_TYPE_ASGI_APP, requires_proxy_auth=True))
    await harness.deploy()
    with pytest.raises(Unauthenticated):
        await harness.requests.open("shoal--app-web", dict(SCOPE))
    token_id, secret = await harness.tokens.create()
    headers = [(b"modal-key", token_id.encode()), (b"modal-secret", secret.encode()), (b"accept", b"*/*")]
    await harness.requests.open("shoal--app-web", {**SCOPE, "headers": headers})
    taken = await harness.take_input()
    ((scope,), _) = pickle.loads(taken.input.args)
    assert scope["headers"] == [(b"accept", b"*/*")]


async def test_an_abandoned_websocket_tells_the_app_it_disconnected(db, tmp_path):
    harness = Harness(db, tmp_path)
    await harness.deploy()
    scope = {"type": "websocket", "path": "/", "query_string": b"", "headers": [], "subprotocols": []}
    connection = await harness.requests.open("shoal--app-web", scope)
    assert connection.websocket
    harness.requests.send(connection, api_pb2.Asgi(websocket_connect=api_pb2.Asgi.WebsocketConnect()))
    await harness.take_input()
    await harness.requests.close(connection, abandoned=True)
    sent = [api_pb2.Asgi.FromString(c.data) for c in connection.call.data_in]
    assert [m.WhichOneof("type") for m in sent] == ["websocket_connect", "websocket_disconnect"]
    assert harness.cancelled == [connection.call.call_id]
    await harness.calls.flush()
