"""An HTTP request or WebSocket connection to a web endpoint, as the client's runtime in a
container takes it.

The request is a call with one input whose argument is the ASGI scope. What the client sends goes
to the container as ASGI messages on the call's data_in stream (`http.request` with the body, or
`websocket.connect`, `websocket.receive`, `websocket.disconnect`); the ASGI app's messages
(`http.response.start`, `http.response.body`, `websocket.accept`, `websocket.send`, ...) come back
on its data_out stream, and the input's output ends the call. Only ASGI messages, protobuf, are
read from the container: a web endpoint's output is never unpickled here.
"""

import asyncio
import pickle
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from modal_proto import api_pb2

from ..store.blobs import BlobStore
from .calls import Call, Calls
from .errors import FailedPrecondition, NotFound
from .functions import Revision
from .tokens import Tokens
from .web_endpoints import Endpoint, WebEndpoints

ASGI, PICKLE = api_pb2.DATA_FORMAT_ASGI, api_pb2.DATA_FORMAT_PICKLE
SYNC = api_pb2.FUNCTION_CALL_INVOCATION_TYPE_SYNC
BODY_CHUNK = 1024**2  # request body bytes per http.request message
WAIT = 60.0  # longest a wait for the container's next message sleeps before it looks again
PROXY_AUTH_HEADERS = (b"modal-key", b"modal-secret")


class CallFailed(Exception):
    """The endpoint's call ended in failure: an exception, a timeout, a container that could not start."""


@dataclass
class WebRequest:
    call: Call
    label: str
    websocket: bool  # a WebSocket connection, not an HTTP request


class WebRequests:
    def __init__(
        self,
        endpoints: WebEndpoints,
        calls: Calls,
        blobs: BlobStore,
        tokens: Tokens,
        call_target: Callable[[str], Awaitable[Revision]],
        cancel: Callable[[str], Awaitable[None]],
    ):
        self.endpoints = endpoints
        self.calls = calls
        self.blobs = blobs
        self.tokens = tokens
        self.call_target = call_target
        self.cancel = cancel
        self._settling: set[asyncio.Task] = set()

    async def resolve(self, label: str, headers: dict[bytes, bytes]) -> tuple[Endpoint, Revision]:
        """The endpoint at `label` and the revision that serves it (a server's, or a function's whose
        calls take requests). NotFound: no such endpoint, or its app is stopped or no longer has it;
        Unauthenticated: it requires proxy auth and the request's Modal-Key and Modal-Secret headers
        are not a token of this server."""
        endpoint = await self.endpoints.find(label)
        try:
            revision = await self.call_target(endpoint.function_id)
        except (NotFound, FailedPrecondition):
            raise NotFound(f"The app that served '{label}' is stopped or no longer has this endpoint") from None
        definition = revision.definition
        if definition.is_server:
            requires_auth = not definition.http_config.unauthenticated
        elif endpoint.method_name in definition.method_definitions:
            requires_auth = definition.method_definitions[endpoint.method_name].webhook_config.requires_proxy_auth
        else:
            requires_auth = definition.webhook_config.requires_proxy_auth
        if requires_auth:
            key, secret = (headers.get(name, b"").decode(errors="replace") for name in PROXY_AUTH_HEADERS)
            await self.tokens.verify(key, secret)
        return endpoint, revision

    async def open(self, label: str, scope: dict, target: tuple[Endpoint, Revision] | None = None) -> WebRequest:
        """Start the endpoint's call for a request (`scope`: its ASGI scope, HTTP or WebSocket), at the
        `target` `resolve` found for it (resolved here when not given)."""
        endpoint, revision = target or await self.resolve(label, dict(scope["headers"]))
        scope["headers"] = [(k, v) for k, v in scope["headers"] if k not in PROXY_AUTH_HEADERS]
        args = pickle.dumps(((scope,), {}))  # (args, kwargs), as the client's runtime unpacks them
        item = api_pb2.FunctionInput(args=args, data_format=PICKLE, method_name=endpoint.method_name)
        call, _ = await self.calls.create(revision.revision_id, SYNC, [(0, item)])
        return WebRequest(call, label, scope["type"] == "websocket")

    def send_body(self, request: WebRequest, body: bytes, more_body: bool) -> None:
        messages = [
            api_pb2.Asgi(http_request=api_pb2.Asgi.HttpRequest(body=body[i : i + BODY_CHUNK], more_body=True))
            for i in range(0, len(body), BODY_CHUNK)
        ] or [api_pb2.Asgi(http_request=api_pb2.Asgi.HttpRequest(body=b"", more_body=True))]
        messages[-1].http_request.more_body = more_body
        self.send(request, *messages)

    def send(self, request: WebRequest, *messages: api_pb2.Asgi) -> None:
        self.calls.put_data_in(request.call, ASGI, [m.SerializeToString() for m in messages])

    async def responses(self, request: WebRequest) -> AsyncIterator[api_pb2.Asgi]:
        """The app's messages as they come, until its call ends; CallFailed if it ended in failure."""
        call = request.call
        while True:
            chunks, call.data_out = call.data_out, []  # no one else reads a web call's stream
            for chunk in chunks:
                data = chunk.data
                if chunk.data_blob_id:  # a piece of a large answer, up to 100 MiB: read off the event loop
                    data = await asyncio.to_thread(self.blobs.get, chunk.data_blob_id.removeprefix("bl-"))
                if chunk.data_format != ASGI:
                    raise CallFailed(f"{request.label} sent a message of data format {chunk.data_format}, not ASGI")
                yield api_pb2.Asgi.FromString(data)
            if not call.unfinished and not call.data_out:
                break
            if not chunks:
                await call.data_pulse.wait(WAIT)
        result = call.outputs[-1].result
        if result.status != api_pb2.GenericResult.GENERIC_STATUS_SUCCESS:
            raise CallFailed(result.exception or "the web endpoint's function failed")

    async def close(self, request: WebRequest, abandoned: bool) -> None:
        """The request is over. Abandoned (its client went away first), a call still running is told
        and cancelled; else it leaves memory once its input's output, which follows the response, is in."""
        call = request.call
        if call.unfinished and abandoned:
            if request.websocket:
                self.send(request, api_pb2.Asgi(websocket_disconnect=api_pb2.Asgi.WebsocketDisconnect(code=1006)))
            else:
                self.send(request, api_pb2.Asgi(http_disconnect=api_pb2.Asgi.HttpDisconnect()))
            await self.cancel(call.call_id)
        if not call.unfinished:
            self.calls.forget(call.call_id)
            return
        settling = asyncio.create_task(self._forget_when_done(call))
        self._settling.add(settling)
        settling.add_done_callback(self._settling.discard)

    async def _forget_when_done(self, call: Call) -> None:
        while call.unfinished:
            await call.pulse.wait(WAIT)
        self.calls.forget(call.call_id)
