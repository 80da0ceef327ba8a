"""gRPC plumbing shared by the servicer: handler decorators, error mapping, and
the default for RPCs shoal does not implement.
"""

import atexit
import functools
import json
import logging
import os
import re
import time
from contextvars import ContextVar
from pathlib import Path

from google.protobuf import timestamp_pb2
from grpclib import GRPCError, Status
from modal_proto.api_grpc import ModalClientBase

from ..control import errors
from ..store.database import ValueRejected
from ..worker.protocol import TASK_ID_HEADER

log = logging.getLogger(__name__)

# SHOAL_RPC_TRACE=FILE: every unary handler's start, request read, answer made and answer sent
# (monotonic clock) are written to FILE as JSON when the server exits (bench/call_breakdown.py).
TRACE_FILE = os.environ.get("SHOAL_RPC_TRACE", "")
_trace: list[tuple[str, float, float, float, float]] = []
if TRACE_FILE:
    atexit.register(lambda: Path(TRACE_FILE).write_text(json.dumps(_trace)))

_STATUS = {
    errors.NotFound: Status.NOT_FOUND,
    errors.InvalidArgument: Status.INVALID_ARGUMENT,
    errors.FailedPrecondition: Status.FAILED_PRECONDITION,
    errors.Unauthenticated: Status.UNAUTHENTICATED,
    errors.AlreadyExists: Status.ALREADY_EXISTS,
    errors.ResourceExhausted: Status.RESOURCE_EXHAUSTED,
    ValueRejected: Status.INVALID_ARGUMENT,
}


def to_grpc(e: Exception, rpc: str) -> GRPCError:
    if isinstance(e, GRPCError):
        return e
    for cls, status in _STATUS.items():
        if isinstance(e, cls):
            return GRPCError(status, str(e))
    log.exception("%s failed", rpc)
    return GRPCError(Status.INTERNAL, f"shoal: {rpc} failed: {type(e).__name__}: {e}")


# The token id the current request came with ("" on a container's own socket).
caller: ContextVar[str] = ContextVar("caller", default="")
# The container a request came from through its worker ("" for all others); the server checked its secret.
proxied_task: ContextVar[str] = ContextVar("proxied_task", default="")


def sending_task(servicer) -> str:
    """The container that sent the request, over its own socket or through its worker ("" for a client)."""
    return servicer.task_id or proxied_task.get()


# The request's peer (grpclib's), None for a container's request through its worker's tunnel.
peer: ContextVar = ContextVar("peer", default=None)
LOOPBACK = ("127.0.0.1", "::1")


def _identify(stream) -> None:
    caller.set(str(stream.metadata.get("x-modal-token-id", "")))
    proxied_task.set(str(stream.metadata.get(TASK_ID_HEADER, "")))
    peer.set(getattr(stream, "peer", None))


def router_url(settings) -> str:
    """Where this request's client reaches the command router. The client speaks plain HTTP to it
    only when its API server is on localhost (and warns of HTTPS there), so a client on this
    machine's loopback gets the router beside the API; others, containers included, get HTTPS."""
    address = peer.get().addr() if peer.get() else None  # no address on a unix socket
    from_loopback = bool(address) and address[0] in LOOPBACK
    return settings.loopback_router_url if from_loopback and settings.loopback_router_url else settings.router_url


# The largest request a client sends is a batch of map inputs: 49 of at most 2 MiB each inline
# (larger ones travel through blobs), about 100 MiB. Containers' requests are not bounded: they
# are on a worker already, and a batched function's outputs may add up to more.
MAX_REQUEST_BYTES = 128 * 1024**2


async def receive(stream, bounded: bool):
    """The request, as `stream.recv_message()` reads it, with the bound grpclib lacks: a message
    larger than MAX_REQUEST_BYTES is refused from its length prefix, before its body is read."""
    if not bounded:
        return await stream.recv_message()
    h2_stream = stream._stream  # grpclib's per-request HTTP/2 stream; grpclib is pinned by the client

    async def bounded(size: int) -> bytes:
        if size > MAX_REQUEST_BYTES:
            raise GRPCError(
                Status.RESOURCE_EXHAUSTED,
                f"A request of {size / 1024**2:.0f} MiB is over shoal's limit of {MAX_REQUEST_BYTES // 1024**2} MiB"
                " (the modal client sends large arguments and results through blobs)",
            )
        return await read(size)

    read, h2_stream.recv_data = h2_stream.recv_data, bounded
    try:
        return await stream.recv_message()
    finally:
        del h2_stream.recv_data  # the class's own again


def unary(fn):
    """`async def X(self, request) -> response` as a grpclib unary handler."""

    @functools.wraps(fn)
    async def handler(self, stream):
        start = time.monotonic()
        _identify(stream)
        self.check_access(fn.__name__)
        request = await receive(stream, bounded=not sending_task(self))
        received = time.monotonic()
        try:
            response = await fn(self, request)
        except Exception as e:
            raise to_grpc(e, fn.__name__) from None
        answered = time.monotonic()
        await stream.send_message(response)
        if TRACE_FILE:
            _trace.append((fn.__name__, start, received, answered, time.monotonic()))

    handler.shoal_implemented = True
    return handler


def streaming(fn):
    """`async def X(self, request)` yielding responses, as a unary-stream handler."""

    @functools.wraps(fn)
    async def handler(self, stream):
        _identify(stream)
        self.check_access(fn.__name__)
        request = await receive(stream, bounded=not sending_task(self))
        try:
            async for response in fn(self, request):
                await stream.send_message(response)
        except Exception as e:
            raise to_grpc(e, fn.__name__) from None

    handler.shoal_implemented = True
    return handler


# The years a request's timestamp may name: what Python's datetime and the protobuf Timestamp can both hold,
# with room for a range or a month to be added to it.
_EARLIEST, _LATEST = -62135596800, 253370764800  # 0001-01-01, 9998-12-31


def seconds(ts: timestamp_pb2.Timestamp) -> float:
    """A request's timestamp in seconds since the epoch; out of range is the caller's error."""
    if not (_EARLIEST <= ts.seconds <= _LATEST and 0 <= ts.nanos < 1_000_000_000):
        raise errors.InvalidArgument(f"Timestamp out of range: {ts.seconds} s, {ts.nanos} ns")
    return ts.seconds + ts.nanos / 1e9


def poll_timeout(requested: float, longest: float) -> float:
    """How long a long-poll waits: what the client asked for, at most `longest`, never negative or NaN."""
    return min(requested, longest) if requested > 0 else 0.0


def timestamp(at: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(at * 1e9))
    return ts


def feature_name(rpc: str) -> str:
    """'SandboxCreate' -> 'Sandbox create': what the user tried to use."""
    words = re.findall(r"[A-Z][a-z0-9]*", rpc)
    return " ".join([words[0]] + [w.lower() for w in words[1:]]) if words else rpc


def _unimplemented(name: str):
    async def handler(self, stream):
        await stream.recv_message()
        raise GRPCError(
            Status.UNIMPLEMENTED,
            f"shoal does not support this feature yet: {feature_name(name)} (RPC {name})",
        )

    handler.__name__ = name
    return handler


def unimplemented(base: type) -> type:
    """`base` (a grpclib service) whose every RPC answers UNIMPLEMENTED; a subclass overrides those it builds."""
    return type(f"Unimplemented{base.__name__}", (base,), {n: _unimplemented(n) for n in base.__abstractmethods__})


# Every RPC of the client's protocol answers; the ones shoal has not built say so.
UnimplementedServicer = unimplemented(ModalClientBase)


def implemented_rpcs(servicer_cls: type) -> set[str]:
    return {
        name
        for name in ModalClientBase.__abstractmethods__
        if getattr(getattr(servicer_cls, name), "shoal_implemented", False)
    }
