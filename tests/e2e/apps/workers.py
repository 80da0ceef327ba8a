"""Functions for a shoal whose containers run on joined workers: w-a (H100:1), w-b (H100:1, A10G:1)."""

import os
import time

import modal

app = modal.App("e2e-workers")


def visible() -> str:
    return os.environ.get("CUDA_VISIBLE_DEVICES", "")


@app.function(gpu="A10G")
def a10g() -> str:
    return visible()


@app.function(gpu="H100")
def h100_calls_cpu() -> tuple[str, str]:
    # A container on a joined worker reaches the API through that worker, here to call another function.
    return visible(), cpu.remote(20)


@app.function()
def cpu(x: int) -> str:
    return f"cpu {x * 2}"


@app.function(gpu="H100", timeout=300)
def slow_h100(seconds: float) -> str:
    print(f"running on {visible()}", flush=True)
    time.sleep(seconds)
    return visible()


@app.function(gpu="B200")
def impossible() -> str:
    return visible()


@app.local_entrypoint()
def main():
    print(f"a10g: {a10g.remote()}")
    gpu, nested = h100_calls_cpu.remote()
    print(f"h100: {gpu}")
    print(f"nested: {nested}")
    try:
        impossible.remote()
    except Exception as e:
        print(f"impossible: {type(e).__name__}: {e}")


@app.local_entrypoint()
def slow(seconds: float = 20.0):
    print(f"result: {slow_h100.remote(seconds)}")
