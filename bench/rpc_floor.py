"""The floor under every call: one empty RPC (ClientHello) through the modal client.

A warm `.remote()` needs at least two of these from the caller and two from the
container, so this bounds what the call path can reach on a machine.

    eval "$(shoal env)"; python bench/rpc_floor.py [N]
"""

import statistics
import sys
import time

from google.protobuf import empty_pb2
from modal._utils.async_utils import synchronizer
from modal.client import _Client


async def measure(n: int) -> dict:
    client = await _Client.from_env()
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        await client._stub.ClientHello(empty_pb2.Empty())
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    result = {
        "rpcs": n,
        "p50_ms": round(statistics.median(samples), 2),
        "p99_ms": round(samples[int(0.99 * (n - 1))], 2),
    }
    print(f"empty RPC through the modal client x{n}: p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms")
    return result


main = synchronizer.create_blocking(measure)

if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
