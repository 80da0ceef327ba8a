"""Deployments: an unchanged `modal deploy`, and consecutive deploys under load.

Under a steady load of `.remote()` calls by name, the app is deployed again
and again with a new VERSION each time. For each deploy it reports how long
after `modal deploy` returned a call could still start and get the old
version (the switch lag), and it counts failed calls.

    eval "$(shoal env)"; python bench/deploy.py [deploys] [calls_per_s]
"""

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time

import modal

MODAL = os.path.join(os.path.dirname(sys.executable), "modal")
APP_NAME = "shoal-bench-deploy"
APP_SOURCE = """
import modal

VERSION = {version}
app = modal.App("{name}", image=modal.Image.debian_slim())


@app.function()
def version():
    return VERSION
"""


def deploy(path: str, version: int) -> float:
    """Writes the app at `version`, deploys it, and returns when `modal deploy` returned."""
    with open(path, "w") as f:
        f.write(APP_SOURCE.format(version=version, name=APP_NAME))
    subprocess.run([MODAL, "deploy", path], capture_output=True, text=True, check=True)
    return time.time()


def unchanged_deploy_wall(path: str, samples: int = 5) -> list[float]:
    deploy(path, 0)
    times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        deploy(path, 0)
        times.append(time.perf_counter() - t0)
    return times


async def deploys_under_load(path: str, deploys: int, rate: float) -> dict:
    fn = modal.Function.from_name(APP_NAME, "version")
    await fn.remote.aio()
    calls: list[tuple[float, float, int | None]] = []  # start, end, version (None: failed)
    errors: list[str] = []
    running = True

    async def one_call() -> None:
        start = time.time()
        try:
            got = await fn.remote.aio()
        except Exception as e:
            got = None
            errors.append(f"{type(e).__name__}: {e}")
        calls.append((start, time.time(), got))

    async def load() -> None:
        pending = set()
        next_at = time.monotonic()
        while running:
            pending.add(asyncio.create_task(one_call()))
            next_at += 1 / rate
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await asyncio.gather(*pending)

    loader = asyncio.create_task(load())
    returned = []
    for v in range(1, deploys + 1):
        await asyncio.sleep(1.0)
        returned.append((v, await asyncio.to_thread(deploy, path, v)))
    await asyncio.sleep(2.0)
    running = False
    await loader

    lags = []
    for v, at in returned:
        stale = [start for start, _, got in calls if start >= at and got is not None and got < v]
        lags.append(max(stale) - at if stale else 0.0)
    latencies = sorted(end - start for start, end, got in calls if got is not None)
    return {
        "calls": len(calls),
        "failed": len(errors),
        "first_errors": errors[:3],
        "max_switch_lag_s": round(max(lags), 3),
        "p50_call_ms": round(statistics.median(latencies) * 1000, 1),
        "p99_call_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 1),
    }


def main(deploys: int = 20, rate: float = 50.0) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "deploy_app.py")
        walls = unchanged_deploy_wall(path)
        load = asyncio.run(deploys_under_load(path, deploys, rate))
        subprocess.run([MODAL, "app", "stop", APP_NAME, "--yes"], capture_output=True)
    result = {
        "unchanged_deploy_median_s": round(statistics.median(walls), 2),
        "unchanged_deploy_max_s": round(max(walls), 2),
        "deploys": deploys,
        "calls_per_s": rate,
        **load,
    }
    print(
        f"unchanged `modal deploy`: median {result['unchanged_deploy_median_s']} s, max {result['unchanged_deploy_max_s']} s"
    )
    print(
        f"{deploys} deploys under {rate:g} calls/s: {load['calls']} calls, {load['failed']} failed, "
        f"longest switch lag {load['max_switch_lag_s']} s, call p50 {load['p50_call_ms']} ms, p99 {load['p99_call_ms']} ms"
    )
    return result


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:2]), *(float(a) for a in sys.argv[2:3]))
