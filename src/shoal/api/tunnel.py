"""The control plane's end of a worker's Tunnel: its containers' unary RPCs, as messages
of one stream, answered by the same handlers as RPCs of their own.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from grpclib import GRPCError, Status
from grpclib.const import Cardinality, Handler
from grpclib.server import Stream
from multidict import MultiDict

from ..worker.protocol import Outbox, call_record, unpack_calls

log = logging.getLogger(__name__)

Check = Callable[[Mapping[str, Any]], Awaitable[None]]


class _Call:
    """What a unary handler uses of its stream: the metadata, one request, one reply."""

    def __init__(self, metadata: MultiDict, request: Any):
        self.metadata = metadata
        self.request = request
        self.reply: Any = None

    async def recv_message(self) -> Any:
        return self.request

    async def send_message(self, reply: Any) -> None:
        self.reply = reply


async def serve_tunnel(stream: Stream, handlers: dict[str, Handler], check: Check) -> None:
    """Answer each call in a task of its own until the worker ends the stream; then cancel the rest."""
    outbox = Outbox(stream)
    calls: dict[int, asyncio.Task] = {}

    async def answer(call_id: int, header: dict, payload: bytes) -> None:
        try:
            reply = await _dispatch(header, payload, handlers, check)
            status, message = 0, ""
        except GRPCError as e:
            reply, status, message = b"", e.status.value, e.message or ""
        except Exception as e:
            log.exception("tunnelled %s failed", header.get("method"))
            reply, status, message = b"", Status.INTERNAL.value, f"shoal: {type(e).__name__}: {e}"
        outbox.put(call_record({"id": call_id, "status": status, "message": message}, reply))

    try:
        async for message in stream:
            for header, payload in unpack_calls(message):
                call_id = header["id"]
                if header.get("cancel"):
                    if task := calls.get(call_id):
                        task.cancel()
                    continue
                calls[call_id] = asyncio.create_task(answer(call_id, header, payload))
                calls[call_id].add_done_callback(lambda _, i=call_id: calls.pop(i, None))
    finally:
        for task in calls.values():
            task.cancel()
        outbox.close()


async def _dispatch(header: dict, payload: bytes, handlers: dict[str, Handler], check: Check) -> bytes:
    method = header["method"]
    handler = handlers.get(method)
    if handler is None or handler.cardinality is not Cardinality.UNARY_UNARY:
        raise GRPCError(Status.UNIMPLEMENTED, f"{method} is not a unary RPC of the Modal API")
    metadata = MultiDict(header["metadata"])
    await check(metadata)
    try:
        request = handler.request_type.FromString(payload)
    except Exception:
        raise GRPCError(Status.INVALID_ARGUMENT, f"{method}: the request does not parse") from None
    call = _Call(metadata, request)
    await handler.func(call)
    return call.reply.SerializeToString()
