"""`modal run --detach`: the local entrypoint spawns a call and returns; the app runs on until it is done."""

import time

import modal

app = modal.App("e2e-detached")


@app.function(image=modal.Image.debian_slim())
def slow(seconds: float) -> str:
    time.sleep(seconds)
    print("the spawned call is done")
    return "done"


@app.local_entrypoint()
def main(seconds: float = 3.0):
    print(f"spawned: {slow.spawn(seconds).object_id}", flush=True)
