"""Warm `.remote()` round trip: p50 and p99 over N calls to a running container.

eval "$(shoal env)"; python bench/remote_latency.py [N]
"""

import statistics
import sys
import time

from bench_app import app, echo


def main(n: int = 1000) -> dict:
    with app.run():
        echo.remote(0)  # start the container; the timed calls are warm
        samples = []
        for i in range(n):
            t0 = time.perf_counter()
            echo.remote(i)
            samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    result = {
        "calls": n,
        "p50_ms": round(statistics.median(samples), 2),
        "p99_ms": round(samples[int(0.99 * (n - 1))], 2),
        "max_ms": round(samples[-1], 2),
    }
    print(f"warm .remote() x{n}: p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms")
    return result


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
