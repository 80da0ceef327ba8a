"""`.map()` over N trivial inputs: inputs per second, end to end, the CPU each input cost
the server (when it runs on this machine), the caller and the whole machine (containers too),
and the most containers the function had meanwhile.

    eval "$(shoal env)"; python bench/map_throughput.py [N]
"""

import os
import sys
import threading
import time

from bench_app import app, echo
from cpu import machine_seconds, process_seconds

from shoal.cli.state import read_json, shoal_home, state_path


def measure(function, n: int, pids: dict[str, int]) -> dict:
    """Map `function` (echo, or a variant of it) over range(n) inside a running app."""
    function.remote(0)  # the image and a first container are ready; the map is what is timed
    before = {name: process_seconds(pid) for name, pid in pids.items()}
    machine = machine_seconds()
    peak, done = [0], threading.Event()

    def count_containers() -> None:
        while not done.wait(0.5):
            peak[0] = max(peak[0], function.get_current_stats().num_total_runners)

    counter = threading.Thread(target=count_containers)
    counter.start()
    t0 = time.perf_counter()
    results = list(function.map(range(n)))
    elapsed = time.perf_counter() - t0
    done.set()
    counter.join()
    cpu_ms = {name: (process_seconds(pid) - before[name]) * 1000 / n for name, pid in pids.items()}
    cpu_ms["machine"] = (machine_seconds() - machine) * 1000 / n
    assert results == list(range(n))
    result = {"inputs": n, "seconds": round(elapsed, 2), "inputs_per_s": round(n / elapsed), "containers": peak[0]}
    return result | {f"{name}_cpu_ms_per_input": round(ms, 2) for name, ms in cpu_ms.items()}


def describe(result: dict) -> str:
    suffix = "_cpu_ms_per_input"
    spent = ", ".join(f"{k.removesuffix(suffix)} {ms:.2f} ms" for k, ms in result.items() if k.endswith(suffix))
    return (
        f".map() over {result['inputs']} inputs: {result['inputs_per_s']} inputs/s ({result['seconds']} s), "
        f"at most {result['containers']} containers; CPU per input: {spent}"
    )


def main(n: int = 10_000) -> dict:
    state = read_json(state_path(shoal_home())) or {}
    pids = {"caller": os.getpid(), **({"server": state["pid"]} if "pid" in state else {})}
    with app.run():
        result = measure(echo, n, pids)
    print(describe(result))
    return result


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
