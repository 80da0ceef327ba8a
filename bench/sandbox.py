"""Sandboxes: from `Sandbox.create` to the command's first output, a command run in a running
sandbox (`Sandbox.exec`), many sandboxes started at once, and output streamed out of one.

    eval "$(shoal env)"; python bench/sandbox.py [--n 20] [--execs 200] [--at-once 16] [--mib 64]

The image is built (or found) before anything is timed: what is measured is a sandbox's own
start, its container and its command, as the client sees it. When shoal runs on this machine,
`runc exec` of `true` into the same sandbox's container, with none of shoal, is timed as the
yardstick of an exec.
"""

import argparse
import json
import os
import statistics
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import modal

from shoal.cli.state import shoal_home

APP = "bench-sandbox"


def _ms(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p95_ms": round(ordered[max(0, int(len(ordered) * 0.95) - 1)] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


def first_output(app: modal.App) -> float:
    t0 = time.perf_counter()
    sb = modal.Sandbox.create("echo", "hi", app=app)
    assert sb.stdout.read() == "hi\n"
    elapsed = time.perf_counter() - t0
    sb.wait()
    return elapsed


def runc_exec(task_id: str, n: int) -> dict | None:
    """`runc exec <container> true`, as a shell runs it; None when shoal's runc state is not here."""
    root = os.path.join(shoal_home(), "runtime", "runc")
    if not os.path.isdir(root):
        return None
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(["runc", "--root", root, "exec", task_id, "true"], check=True)
        samples.append(time.perf_counter() - t0)
    return _ms(samples)


def main(n: int = 20, execs: int = 200, at_once: int = 16, mib: int = 64) -> dict:
    app = modal.App.lookup(APP, create_if_missing=True)
    first_output(app)  # the default image is built or found; the sandboxes' own start is what is timed
    starts = [first_output(app) for _ in range(n)]

    sb = modal.Sandbox.create(app=app, timeout=600)
    sb.exec("true").wait()
    exec_samples = []
    for _ in range(execs):
        t0 = time.perf_counter()
        assert sb.exec("true").wait() == 0
        exec_samples.append(time.perf_counter() - t0)
    yardstick = runc_exec(sb._get_task_id(), 50)

    streamed = sb.exec("head", "-c", str(mib * 1024**2), "/dev/zero", text=False)
    t0 = time.perf_counter()
    size = sum(len(chunk) for chunk in streamed.stdout)
    stream_rate = mib / (time.perf_counter() - t0)
    assert size == mib * 1024**2 and streamed.wait() == 0
    sb.terminate()

    t0 = time.perf_counter()
    with ThreadPoolExecutor(at_once) as pool:
        each = list(pool.map(lambda _: first_output(app), range(at_once)))
    all_started = time.perf_counter() - t0
    return {
        "create_to_first_output": _ms(starts),
        "exec_round_trip": _ms(exec_samples),
        "runc_exec_yardstick": yardstick,
        f"{at_once}_at_once": {"all_s": round(all_started, 2), "slowest_s": round(max(each), 2)},
        "exec_stdout_mib_per_s": round(stream_rate, 1),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--execs", type=int, default=200)
    parser.add_argument("--at-once", type=int, default=16)
    parser.add_argument("--mib", type=int, default=64)
    args = parser.parse_args()
    print(json.dumps(main(args.n, args.execs, args.at_once, args.mib), indent=2))
