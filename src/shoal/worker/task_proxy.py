"""A container's private endpoint on a worker away from the control plane.

The container's client talks to a unix socket as it does on the embedded worker;
every RPC is passed on unparsed to the control plane with the task's id and secret
added: unary ones as messages of the worker's one Tunnel stream, streaming ones as
RPCs of their own. The container itself never holds a credential.
"""

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

from google.protobuf.wrappers_pb2 import BytesValue
from grpclib import GRPCError, Status
from grpclib.const import Cardinality, Handler
from grpclib.encoding.base import CodecBase
from grpclib.server import Server, Stream
from modal_proto.api_grpc import ModalClientBase

from .protocol import TASK_ID_HEADER, TASK_SECRET_HEADER, TUNNEL, Outbox, call_record, unpack_calls


class _Raw(CodecBase):
    """Messages stay bytes: the proxy never decodes what it passes on."""

    __content_subtype__ = "proto"

    def encode(self, message: Any, message_type: Any) -> bytes:
        return message

    def decode(self, data: bytes, message_type: Any) -> Any:
        return data


def _modal_methods() -> dict[str, Cardinality]:
    names = ModalClientBase.__abstractmethods__
    every = type("_Every", (ModalClientBase,), dict.fromkeys(names))()
    return {path: handler.cardinality for path, handler in every.__mapping__().items()}


MODAL_METHODS = _modal_methods()
RAW = _Raw()


class Tunnel:
    """The unary RPCs of every container on the worker, over one stream to the control plane."""

    def __init__(self) -> None:
        self._outbox: Outbox | None = None
        self._ids = itertools.count()
        self._waiting: dict[int, asyncio.Future[tuple[dict, bytes]]] = {}

    @property
    def open(self) -> bool:
        return self._outbox is not None

    async def run(self, channel: Any, metadata: list[tuple[str, str]]) -> None:
        """Carry calls until the stream ends; the calls still waiting then fail as UNAVAILABLE."""
        try:
            async with channel.request(
                TUNNEL, Cardinality.STREAM_STREAM, BytesValue, BytesValue, metadata=metadata
            ) as stream:
                await stream.send_request()
                self._outbox = Outbox(stream)
                async for message in stream:
                    for header, payload in unpack_calls(message):
                        waiter = self._waiting.pop(header["id"], None)
                        if waiter and not waiter.done():
                            waiter.set_result((header, payload))
        finally:
            if self._outbox:
                self._outbox.close()
            self._outbox = None
            lost = GRPCError(Status.UNAVAILABLE, "the worker lost its connection to the control plane")
            for waiter in self._waiting.values():
                if not waiter.done():
                    waiter.set_exception(lost)
            self._waiting.clear()

    async def call(self, path: str, metadata: list[tuple[str, str]], request: bytes) -> bytes:
        if self._outbox is None:
            raise GRPCError(Status.UNAVAILABLE, "the worker is not connected to the control plane")
        call_id = next(self._ids)
        waiter = self._waiting[call_id] = asyncio.get_running_loop().create_future()
        self._outbox.put(call_record({"id": call_id, "method": path, "metadata": metadata}, request))
        try:
            header, reply = await waiter
        except asyncio.CancelledError:
            if call_id in self._waiting and self._outbox:  # the container gave up: so does the control plane
                self._outbox.put(call_record({"id": call_id, "cancel": True}))
            raise
        finally:
            self._waiting.pop(call_id, None)
        if header["status"]:
            raise GRPCError(Status(header["status"]), header["message"])
        return reply


class _Forwarder:
    def __init__(self, channel: Any, tunnel: Tunnel, task_id: str, secret: str):
        self.channel = channel
        self.tunnel = tunnel
        self.identity = ((TASK_ID_HEADER, task_id), (TASK_SECRET_HEADER, secret))

    def __mapping__(self) -> dict[str, Handler]:
        return {path: Handler(self._forward(path, c), c, None, None) for path, c in MODAL_METHODS.items()}

    def _forward(self, path: str, cardinality: Cardinality) -> Callable[[Stream], Awaitable[None]]:
        async def forward(stream: Stream) -> None:
            metadata = [*stream.metadata.items(), *self.identity] if stream.metadata else list(self.identity)
            if (
                cardinality is Cardinality.UNARY_UNARY
                and self.tunnel.open
                and all(isinstance(v, str) for _, v in metadata)
            ):
                await stream.send_message(await self.tunnel.call(path, metadata, await stream.recv_message()))
                return
            upstream = self.channel.request(path, cardinality, None, None, deadline=stream.deadline, metadata=metadata)
            try:
                async with upstream:
                    if cardinality.client_streaming:
                        sending = asyncio.create_task(_pump(stream, upstream))
                    else:
                        await upstream.send_message(await stream.recv_message(), end=True)
                    async for reply in upstream:
                        await stream.send_message(reply)
                    if cardinality.client_streaming:
                        await sending
            except GRPCError as e:
                raise GRPCError(e.status, e.message) from None

        return forward


async def _pump(stream: Stream, upstream: Any) -> None:
    async for message in stream:
        await upstream.send_message(message)
    await upstream.end()


async def serve_task(
    channel: Any, tunnel: Tunnel, task_id: str, secret: str, path: str
) -> Callable[[], Awaitable[None]]:
    """Answer the container's RPCs on `path` through `tunnel` when it is open, otherwise through
    `channel` (made with codec=RAW); returns the stop."""
    server = Server([_Forwarder(channel, tunnel, task_id, secret)], codec=RAW)
    await server.start(path=path)

    async def stop() -> None:
        server.close()
        await server.wait_closed()

    return stop
