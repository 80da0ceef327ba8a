"""Containers that scale down when idle, are killed when they run out of memory, start too slowly,
or size their libraries' thread pools by their CPU reservation."""

import os
import sys
import time

import modal

app = modal.App("e2e-lifecycle")
image = modal.Image.debian_slim()


@app.function(image=image, scaledown_window=2)
def quick(x: int) -> int:
    return x + 1


@app.function(image=image, memory=(64, 200))
def hog(megabytes: int) -> int:
    blocks = [bytearray(1024 * 1024) for _ in range(megabytes)]
    return len(blocks)


THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@app.function(image=image)
def threads_by_default() -> list[str]:
    return [os.environ.get(name, "") for name in THREAD_ENV]


@app.function(image=image, cpu=1.5)
def threads_of_a_core_and_a_half() -> list[str]:
    return [os.environ.get(name, "") for name in THREAD_ENV]


@app.function(image=image.env({"OMP_NUM_THREADS": "7"}), cpu=1.5)
def threads_the_image_sets() -> list[str]:
    return [os.environ.get(name, "") for name in THREAD_ENV]


@app.cls(image=image, startup_timeout=3)
class SlowStart:
    @modal.enter()
    def load(self):
        time.sleep(60)

    @modal.method()
    def ready(self) -> bool:
        return True


if __name__ == "__main__":
    with app.run():
        if sys.argv[1] == "scaledown":
            print("quick:", quick.remote(1), flush=True)
            time.sleep(float(sys.argv[2]))
        elif sys.argv[1] == "oom":
            try:
                hog.remote(1000)
                print("oom: returned")
            except Exception as e:
                print(f"oom: {type(e).__name__}: {e}")
        elif sys.argv[1] == "threads":
            for name in ("threads_by_default", "threads_of_a_core_and_a_half", "threads_the_image_sets"):
                print(f"{name}: {' '.join(globals()[name].remote())}")
        elif sys.argv[1] == "slow_start":
            try:
                SlowStart().ready.remote()
                print("slow_start: returned")
            except Exception as e:
                print(f"slow_start: {type(e).__name__}: {e}")
