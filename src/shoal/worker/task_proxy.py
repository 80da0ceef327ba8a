"""A container's private endpoint on a worker away from the control plane.

The container's client talks to a unix socket as it does on the embedded worker;
every RPC is passed on unparsed to the control plane over TCP with the task's
id and secret added. The container itself never holds a credential.
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from grpclib import GRPCError
from grpclib.const import Cardinality, Handler
from grpclib.encoding.base import CodecBase
from grpclib.server import Server, Stream
from modal_proto.api_grpc import ModalClientBase

from .protocol import TASK_ID_HEADER, TASK_SECRET_HEADER


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


class _Forwarder:
    def __init__(self, channel: Any, task_id: str, secret: str):
        self.channel = channel
        self.identity = ((TASK_ID_HEADER, task_id), (TASK_SECRET_HEADER, secret))

    def __mapping__(self) -> dict[str, Handler]:
        return {path: Handler(self._forward(path, c), c, None, None) for path, c in MODAL_METHODS.items()}

    def _forward(self, path: str, cardinality: Cardinality) -> Callable[[Stream], Awaitable[None]]:
        async def forward(stream: Stream) -> None:
            metadata = [*stream.metadata.items(), *self.identity] if stream.metadata else list(self.identity)
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


async def serve_task(channel: Any, task_id: str, secret: str, path: str) -> Callable[[], Awaitable[None]]:
    """Answer the container's RPCs on `path` through `channel` (made with codec=RAW); returns the stop."""
    server = Server([_Forwarder(channel, task_id, secret)], codec=RAW)
    await server.start(path=path)

    async def stop() -> None:
        server.close()
        await server.wait_closed()

    return stop
