"""A worker's Tunnel: containers' unary RPCs as messages of one stream, answered by the
control plane's handlers as RPCs of their own would be (worker/task_proxy.py, api/tunnel.py).
"""

import asyncio

import pytest
from google.protobuf.wrappers_pb2 import BytesValue
from grpclib import GRPCError, Status
from grpclib.client import Channel
from grpclib.const import Cardinality, Handler
from grpclib.server import Server

from shoal.api.tunnel import serve_tunnel
from shoal.worker.protocol import TUNNEL
from shoal.worker.task_proxy import Tunnel


class _Modal:
    """Stand-ins for the servicer's handlers, and what they saw."""

    def __init__(self):
        self.waiting = asyncio.Event()
        self.cancelled = asyncio.Event()

    def handlers(self) -> dict[str, Handler]:
        unary = Cardinality.UNARY_UNARY
        return {
            "/t/Echo": Handler(self.echo, unary, BytesValue, BytesValue),
            "/t/Missing": Handler(self.missing, unary, BytesValue, BytesValue),
            "/t/Wait": Handler(self.wait, unary, BytesValue, BytesValue),
            "/t/Stream": Handler(self.echo, Cardinality.UNARY_STREAM, BytesValue, BytesValue),
        }

    async def echo(self, stream):
        request = await stream.recv_message()
        await stream.send_message(BytesValue(value=stream.metadata["x-who"].encode() + b":" + request.value))

    async def missing(self, stream):
        await stream.recv_message()
        raise GRPCError(Status.NOT_FOUND, "nothing here")

    async def wait(self, stream):
        await stream.recv_message()
        self.waiting.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


async def _check(metadata) -> None:
    if metadata.get("x-secret") != "s":
        raise GRPCError(Status.UNAUTHENTICATED, "wrong secret")


class _Service:
    def __init__(self, modal: _Modal):
        self.modal = modal

    def __mapping__(self):
        return {TUNNEL: Handler(self.tunnel, Cardinality.STREAM_STREAM, BytesValue, BytesValue)}

    async def tunnel(self, stream):
        await serve_tunnel(stream, self.modal.handlers(), _check)


@pytest.fixture
async def tunnelled(tmp_path):
    modal = _Modal()
    server = Server([_Service(modal)])
    await server.start(path=str(tmp_path / "api.sock"))
    channel = Channel(path=str(tmp_path / "api.sock"))
    tunnel = Tunnel()
    running = asyncio.create_task(tunnel.run(channel, []))
    while not tunnel.open:
        await asyncio.sleep(0.01)
    yield modal, tunnel, channel, running
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    channel.close()
    server.close()
    await server.wait_closed()


def _request(value: bytes) -> bytes:
    return BytesValue(value=value).SerializeToString()


async def test_calls_are_answered_each_by_its_own_reply(tunnelled):
    _, tunnel, _, _ = tunnelled
    who = [("x-who", "c1"), ("x-secret", "s")]
    replies = await asyncio.gather(*(tunnel.call("/t/Echo", who, _request(b"%d" % i)) for i in range(50)))
    assert [BytesValue.FromString(r).value for r in replies] == [b"c1:%d" % i for i in range(50)]


async def test_errors_come_back_with_their_status(tunnelled):
    _, tunnel, _, _ = tunnelled
    good, bad = [("x-secret", "s")], [("x-secret", "guess")]
    cases = [
        ("/t/Missing", good, Status.NOT_FOUND, "nothing here"),
        ("/t/Echo", bad, Status.UNAUTHENTICATED, "wrong secret"),
        ("/t/Stream", good, Status.UNIMPLEMENTED, "/t/Stream is not a unary RPC of the Modal API"),
        ("/t/Nowhere", good, Status.UNIMPLEMENTED, "/t/Nowhere is not a unary RPC of the Modal API"),
    ]
    for method, metadata, status, message in cases:
        with pytest.raises(GRPCError) as raised:
            await tunnel.call(method, metadata, _request(b"x"))
        assert (raised.value.status, raised.value.message) == (status, message)
    with pytest.raises(GRPCError) as raised:
        await tunnel.call("/t/Echo", [("x-secret", "s")], b"\xff not a message")
    assert raised.value.status == Status.INVALID_ARGUMENT


async def test_a_call_given_up_is_cancelled_on_the_server(tunnelled):
    modal, tunnel, _, _ = tunnelled
    call = asyncio.create_task(tunnel.call("/t/Wait", [("x-secret", "s")], _request(b"")))
    await asyncio.wait_for(modal.waiting.wait(), 5)
    call.cancel()
    await asyncio.wait_for(modal.cancelled.wait(), 5)


async def test_a_lost_connection_fails_the_calls_waiting_on_both_ends(tunnelled):
    modal, tunnel, channel, running = tunnelled
    call = asyncio.create_task(tunnel.call("/t/Wait", [("x-secret", "s")], _request(b"")))
    await asyncio.wait_for(modal.waiting.wait(), 5)
    channel.close()  # the connection is gone
    with pytest.raises(GRPCError) as raised:
        await asyncio.wait_for(call, 5)
    assert raised.value.status == Status.UNAVAILABLE
    await asyncio.wait_for(modal.cancelled.wait(), 5)
    await asyncio.wait([running], timeout=5)
    assert not tunnel.open
    with pytest.raises(GRPCError) as raised:
        await tunnel.call("/t/Echo", [("x-secret", "s")], _request(b""))
    assert raised.value.status == Status.UNAVAILABLE
