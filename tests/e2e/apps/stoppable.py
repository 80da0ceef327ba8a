"""A call whose first container is stopped from outside: the input runs again in another."""

import os
import time

import modal

app = modal.App("e2e-stoppable")
marker = "/tmp/shoal-e2e-stoppable"  # inside the container: each container has its own /tmp


@app.function()
def work() -> str:
    print(f"working in {os.environ['MODAL_TASK_ID']}", flush=True)
    time.sleep(12)  # room for the test to look inside before it stops the container
    return f"finished in {os.environ['MODAL_TASK_ID']}"


@app.local_entrypoint()
def main():
    print(work.remote())
