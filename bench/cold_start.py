"""Cold start: image cached, no warm container, from `.remote()` to its result.

Each sample runs the app anew, so the function has no container yet.

    eval "$(shoal env)"; python bench/cold_start.py [samples]
"""

import statistics
import sys
import time

from bench_app import app, echo


def main(samples: int = 5) -> dict:
    with app.run():
        echo.remote(0)  # make sure the image is built before timing
    times = []
    for i in range(samples):
        with app.run():
            t0 = time.perf_counter()
            echo.remote(i)
            times.append(time.perf_counter() - t0)
    result = {"samples": samples, "median_s": round(statistics.median(times), 3), "max_s": round(max(times), 3)}
    print(f"cold start to first result: median {result['median_s']} s, max {result['max_s']} s")
    return result


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
