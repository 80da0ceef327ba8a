"""What a server spends on an RPC of its own against a message on a stream already open
(grpclib at both ends, in two processes): why a joined worker's tunnel carries its
containers' unary RPCs as messages.

    python bench/stream_vs_rpc.py [N]
"""

import asyncio
import multiprocessing
import os
import sys
import tempfile
import time

from cpu import process_seconds
from google.protobuf.wrappers_pb2 import BytesValue
from grpclib.client import Channel
from grpclib.const import Cardinality, Handler
from grpclib.server import Server

# What the modal client sends with every request, roughly.
METADATA = [
    ("x-modal-client-version", "1.6.4"),
    ("x-modal-client-type", "1"),
    ("x-modal-python-version", "3.11.2"),
    ("x-modal-platform", "linux"),
    ("x-modal-token-id", "ak-" + "x" * 22),
    ("x-modal-token-secret", "as-" + "y" * 22),
]
PAYLOAD = BytesValue(value=b"x" * 200)


class _Echo:
    def __mapping__(self) -> dict[str, Handler]:
        return {
            "/bench.Echo/Unary": Handler(self.unary, Cardinality.UNARY_UNARY, BytesValue, BytesValue),
            "/bench.Echo/Stream": Handler(self.stream, Cardinality.STREAM_STREAM, BytesValue, BytesValue),
        }

    async def unary(self, stream) -> None:
        await stream.send_message(await stream.recv_message())

    async def stream(self, stream) -> None:
        async for message in stream:
            await stream.send_message(message)


def _serve(path: str, ready) -> None:
    async def serve() -> None:
        server = Server([_Echo()])
        await server.start(path=path)
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(serve())


async def _measure(path: str, pid: int, n: int) -> dict[str, float]:
    channel = Channel(path=path)
    result = {}
    try:
        for kind in ("unary", "stream"):
            cpu, t0 = process_seconds(pid), time.perf_counter()
            if kind == "unary":
                for _ in range(n):
                    async with channel.request(
                        "/bench.Echo/Unary", Cardinality.UNARY_UNARY, BytesValue, BytesValue, metadata=METADATA
                    ) as stream:
                        await stream.send_message(PAYLOAD, end=True)
                        await stream.recv_message()
            else:
                async with channel.request(
                    "/bench.Echo/Stream", Cardinality.STREAM_STREAM, BytesValue, BytesValue, metadata=METADATA
                ) as stream:
                    for _ in range(n):
                        await stream.send_message(PAYLOAD)
                        await stream.recv_message()
                    await stream.end()
            wall = time.perf_counter() - t0
            result[f"{kind}_server_cpu_ms"] = round((process_seconds(pid) - cpu) * 1000 / n, 3)
            result[f"{kind}_round_trip_ms"] = round(wall * 1000 / n, 3)
    finally:
        channel.close()
    return result


def main(n: int = 3000) -> dict[str, float]:
    path = os.path.join(tempfile.mkdtemp(prefix="shoal-bench-"), "echo.sock")
    ready = multiprocessing.Event()
    server = multiprocessing.Process(target=_serve, args=(path, ready), daemon=True)
    server.start()
    try:
        ready.wait(10)
        result = asyncio.run(_measure(path, server.pid, n))
    finally:
        server.kill()
    print(
        f"x{n}: an RPC of its own costs the server {result['unary_server_cpu_ms']} ms of CPU "
        f"({result['unary_round_trip_ms']} ms round trip); a message on an open stream "
        f"{result['stream_server_cpu_ms']} ms ({result['stream_round_trip_ms']} ms)"
    )
    return result


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3000)
