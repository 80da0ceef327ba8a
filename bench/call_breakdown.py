"""Where a warm `.remote()` spends its time: the caller's client, the server, the container's client.

Run it with shoal stopped: it starts shoal (SHOAL_HOME, default settings) with SHOAL_RPC_TRACE
set, times N sequential calls of a function that returns `time.monotonic()` (a clock the
host and its containers share), stops shoal, and matches each call with the server's
handler timings. Prints the median of each step.

    python bench/call_breakdown.py [N]
"""

import json
import os
import shutil
import statistics
import sys
import tempfile
import time

import modal

app = modal.App("shoal-bench-breakdown")


@app.function(image=modal.Image.debian_slim())
def stamp(_: int) -> float:
    return time.monotonic()


def calls(n: int) -> list[tuple[float, float, float]]:
    """(sent, the function ran, returned) per call, on the monotonic clock."""
    with app.run():
        stamp.remote(0)  # the container is warm for the timed calls
        timed = []
        for i in range(n):
            sent = time.monotonic()
            ran = stamp.remote(i)
            timed.append((sent, ran, time.monotonic()))
    return timed


def breakdown(timed: list[tuple[float, float, float]], trace: list) -> dict[str, float]:
    handled: dict[str, list[tuple[float, float, float, float]]] = {}
    for name, *times in trace:
        handled.setdefault(name, []).append(tuple(times))

    def last(name: str, lo: float, hi: float, at: int) -> tuple[float, ...] | None:
        found = [h for h in handled.get(name, []) if lo <= h[at] <= hi]
        return found[-1] if found else None

    steps: dict[str, list[float]] = {}
    for sent, ran, returned in timed[len(timed) // 10 :]:  # the first tenth warms up
        fmap = last("FunctionMap", sent, returned, 0)
        inputs = last("FunctionGetInputs", sent, ran, 3)  # the answer that carried this input
        put = last("FunctionPutOutputs", ran, returned, 0)
        outputs = last("FunctionGetOutputs", ran, returned, 3)
        if not (fmap and inputs and put and outputs):
            continue
        for step, ms in (
            ("client: .remote() until the server's FunctionMap handler starts", fmap[0] - sent),
            ("server: FunctionMap read, input stored, answered", fmap[3] - fmap[0]),
            ("server: the waiting FunctionGetInputs woken and answered", inputs[3] - fmap[2]),
            ("container's client: until the function runs", ran - inputs[3]),
            ("container's client: from the function's start until FunctionPutOutputs", put[0] - ran),
            ("server: FunctionPutOutputs", put[3] - put[0]),
            ("server: the waiting FunctionGetOutputs woken and answered", outputs[3] - put[3]),
            ("client: until .remote() returns", returned - outputs[3]),
            ("total", returned - sent),
        ):
            steps.setdefault(step, []).append(ms * 1000)
    return {step: round(statistics.median(ms), 2) for step, ms in steps.items()}


def main(n: int = 1000) -> dict[str, float]:
    from own_shoal import own_shoal  # here: containers import this file, and only this file is mounted

    trace_file = os.path.join(tempfile.mkdtemp(prefix="shoal-rpc-trace-"), "trace.json")
    with own_shoal("with the trace on", env={"SHOAL_RPC_TRACE": trace_file}):
        timed = calls(n)
    with open(trace_file) as f:
        result = breakdown(timed, json.load(f))
    shutil.rmtree(os.path.dirname(trace_file))
    for step, ms in result.items():
        print(f"{ms:6.2f} ms  {step}")
    return result


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
