"""Containers that scale down when idle and are killed when they run out of memory."""

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
