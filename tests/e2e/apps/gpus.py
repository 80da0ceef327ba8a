"""GPU requests against a shoal whose worker declares fake GPUs (H100:2, A10G:1)."""

import os
import time

import modal

app = modal.App("e2e-gpus")


def visible() -> str:
    return os.environ.get("CUDA_VISIBLE_DEVICES", "")


@app.function(gpu="H100")
def one_h100() -> str:
    return visible()


@app.function(gpu="H100:2")
def two_h100() -> str:
    return visible()


@app.function(gpu=["B200", "A10G"])
def fallback() -> str:
    return visible()


@app.function(gpu="B200")
def impossible() -> str:
    return visible()


@app.function(gpu="A10G", scaledown_window=2)
def hold_a10g(seconds: float) -> tuple[float, float]:
    start = time.time()
    time.sleep(seconds)
    return start, time.time()


@app.function()
def no_gpu() -> str:
    return visible()


@app.cls(scaledown_window=2)
class Model:
    @modal.method()
    def gpus(self) -> str:
        return visible()


@app.local_entrypoint()
def main():
    print(f"one_h100: {one_h100.remote()}")
    print(f"two_h100: {two_h100.remote()}")
    print(f"fallback: {fallback.remote()}")
    print(f"no_gpu: [{no_gpu.remote()}]")
    print(f"function with_options(gpu='A10G'): {no_gpu.with_options(gpu='A10G').remote()}")
    print(f"class: [{Model().gpus.remote()}]")
    print(f"class with_options(gpu='A10G'): {Model.with_options(gpu='A10G')().gpus.remote()}")
    first, second = list(hold_a10g.map([2.0, 2.0]))
    print(f"a10g_overlap: {first[0] < second[1] and second[0] < first[1]}")
    try:
        impossible.remote()
    except Exception as e:
        print(f"impossible: {type(e).__name__}: {e}")
