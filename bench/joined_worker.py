"""The call path through a joined worker, and what it costs the control plane.

Run it with shoal stopped: it starts shoal with `--no-local-worker` (SHOAL_HOME, default
settings), joins one `shoal worker` to it, and times warm `.remote()` calls and a `.map()`,
printing beside each figure the CPU time that the control plane's process and the worker's
spent per call or input. The control plane is one process for the whole pool, so its CPU
per input bounds the pool's throughput however many machines join.

    python bench/joined_worker.py [CALLS] [INPUTS]
"""

import os
import statistics
import subprocess
import sys
import time

from bench_app import app, echo
from cpu import process_seconds
from own_shoal import SHOAL, own_shoal

from shoal.cli.state import read_json, shoal_home, state_path


def timed(pids: dict[str, int], count: int, run) -> dict:
    """Wall seconds of `run()` and each process's CPU milliseconds per item."""
    before = {name: process_seconds(pid) for name, pid in pids.items()}
    t0 = time.perf_counter()
    samples = run()
    result = {"seconds": time.perf_counter() - t0, "samples": samples}
    for name, pid in pids.items():
        result[f"{name}_cpu_ms"] = round((process_seconds(pid) - before[name]) * 1000 / count, 2)
    return result


def calls(n: int) -> list[float]:
    samples = []
    for i in range(n):
        t0 = time.perf_counter()
        echo.remote(i)
        samples.append((time.perf_counter() - t0) * 1000)
    return samples


def main(n_calls: int = 1000, n_inputs: int = 3000) -> dict:
    with own_shoal("with no local worker", "--no-local-worker"):
        token = f"{os.environ['MODAL_TOKEN_ID']}:{os.environ['MODAL_TOKEN_SECRET']}"
        server = os.environ["MODAL_SERVER_URL"]
        worker = subprocess.Popen([SHOAL, "worker", "--server", server, "--token", token, "--name", "bench"])
        try:
            pids = {"server": read_json(state_path(shoal_home()))["pid"], "worker": worker.pid}
            with app.run():
                list(echo.map(range(100)))  # the image is on the worker and containers are warm
                remote = timed(pids, n_calls, lambda: calls(n_calls))
                mapped = timed(pids, n_inputs, lambda: list(echo.map(range(n_inputs))))
        finally:
            worker.terminate()
            worker.wait()
    assert mapped["samples"] == list(range(n_inputs))
    result = {
        "remote_p50_ms": round(statistics.median(remote["samples"]), 2),
        "remote_server_cpu_ms": remote["server_cpu_ms"],
        "remote_worker_cpu_ms": remote["worker_cpu_ms"],
        "map_inputs_per_s": round(n_inputs / mapped["seconds"]),
        "map_server_cpu_ms": mapped["server_cpu_ms"],
        "map_worker_cpu_ms": mapped["worker_cpu_ms"],
    }
    print(
        f"through a joined worker: warm .remote() x{n_calls} p50 {result['remote_p50_ms']} ms, CPU per call: "
        f"control plane {result['remote_server_cpu_ms']} ms, worker {result['remote_worker_cpu_ms']} ms; "
        f".map() over {n_inputs}: {result['map_inputs_per_s']} inputs/s, CPU per input: "
        f"control plane {result['map_server_cpu_ms']} ms, worker {result['map_worker_cpu_ms']} ms"
    )
    return result


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
