"""`.map()` over N trivial inputs: inputs per second, end to end.

    eval "$(shoal env)"; python bench/map_throughput.py [N]
"""

import sys
import time

from bench_app import app, echo


def main(n: int = 10_000) -> dict:
    with app.run():
        echo.remote(0)  # the image and a first container are ready; the map is what is timed
        t0 = time.perf_counter()
        results = list(echo.map(range(n)))
        elapsed = time.perf_counter() - t0
    assert results == list(range(n))
    result = {"inputs": n, "seconds": round(elapsed, 2), "inputs_per_s": round(n / elapsed)}
    print(f".map() over {n} inputs: {result['inputs_per_s']} inputs/s ({result['seconds']} s)")
    return result


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
