"""A run_function step slower than its own timeout: the build stops and says so."""

import time

import modal

app = modal.App("e2e-slow-build-function")


def dawdle() -> None:
    print("dawdling", flush=True)
    time.sleep(120)


image = modal.Image.debian_slim().run_function(dawdle, timeout=3)


@app.function(image=image)
def never() -> None:
    pass
