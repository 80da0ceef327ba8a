"""`.map()` over N trivial inputs: inputs per second, end to end, and the CPU each input cost
the server (when it runs on this machine), the caller and the whole machine (containers too).

    eval "$(shoal env)"; python bench/map_throughput.py [N]
"""

import os
import sys
import time

from bench_app import app, echo
from cpu import machine_seconds, process_seconds

from shoal.cli.state import read_json, shoal_home, state_path


def main(n: int = 10_000) -> dict:
    state = read_json(state_path(shoal_home())) or {}
    pids = {"caller": os.getpid(), **({"server": state["pid"]} if "pid" in state else {})}
    with app.run():
        echo.remote(0)  # the image and a first container are ready; the map is what is timed
        before = {name: process_seconds(pid) for name, pid in pids.items()}
        machine = machine_seconds()
        t0 = time.perf_counter()
        results = list(echo.map(range(n)))
        elapsed = time.perf_counter() - t0
        cpu_ms = {name: (process_seconds(pid) - before[name]) * 1000 / n for name, pid in pids.items()}
        cpu_ms["machine"] = (machine_seconds() - machine) * 1000 / n
    assert results == list(range(n))
    result = {"inputs": n, "seconds": round(elapsed, 2), "inputs_per_s": round(n / elapsed)}
    result |= {f"{name}_cpu_ms_per_input": round(ms, 2) for name, ms in cpu_ms.items()}
    spent = ", ".join(f"{name} {ms:.2f} ms" for name, ms in cpu_ms.items())
    print(f".map() over {n} inputs: {result['inputs_per_s']} inputs/s ({result['seconds']} s); CPU per input: {spent}")
    return result


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
