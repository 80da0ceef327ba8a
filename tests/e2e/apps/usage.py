"""Two containers with known requests (tests/e2e/test_usage.py meters them): each serves one
20-second call, and lives until the app stops when both calls have returned. The app's tags
attribute its cost in billing reports."""

import os
import time

import modal

app = modal.App("e2e-usage", tags={"team": "metering"})


@app.function(cpu=1.0, memory=768)
def cpu_held(seconds: float) -> str:
    time.sleep(seconds)
    return os.environ["MODAL_TASK_ID"]


@app.function(gpu="A10G", cpu=1.0, memory=2048)
def gpu_held(seconds: float) -> str:
    time.sleep(seconds)
    return os.environ["MODAL_TASK_ID"]


@app.local_entrypoint()
def main():
    app.set_tags({**app.get_tags(), "run": "e2e"})
    calls = {"cpu_held": cpu_held.spawn(20.0), "gpu_held": gpu_held.spawn(20.0)}
    for name, call in calls.items():
        print(f"{name}: {call.get()}")
