"""Containers that scale down when idle, are killed when they run out of memory, or start too slowly."""

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
        elif sys.argv[1] == "slow_start":
            try:
                SlowStart().ready.remote()
                print("slow_start: returned")
            except Exception as e:
                print(f"slow_start: {type(e).__name__}: {e}")
