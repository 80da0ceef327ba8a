"""An ordinary Modal app exercising the core features, used by the end-to-end tests."""

import os
import time

import helper_mod
import modal

app = modal.App("e2e-basics")
image = modal.Image.debian_slim().add_local_python_source("helper_mod")


@app.function(image=image)
def square(x: int) -> int:
    print(f"squaring {x}")
    return x * x


@app.function(image=image)
def fail(x: int) -> int:
    raise ValueError(f"bad value {x}")


@app.function(image=image)
def fail_on_multiples_of_three(x: int) -> int:
    if x % 3 == 0:
        raise ValueError(f"multiple of three: {x}")
    return x


@app.function(image=image)
def countdown(n: int):
    for i in range(n, 0, -1):
        yield i


@app.function(image=image)
def reverse_bytes(data: bytes) -> bytes:
    return data[::-1]


@app.function(image=image, timeout=3)
def sleep_for(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.function(image=image, retries=modal.Retries(max_retries=2, initial_delay=0.5, backoff_coefficient=2.0))
def succeed_on_third_try(key: str) -> int:
    marker = f"/tmp/attempts-{key}"
    attempts = int(open(marker).read()) + 1 if os.path.exists(marker) else 1
    open(marker, "w").write(str(attempts))
    if attempts < 3:
        raise RuntimeError(f"attempt {attempts} fails")
    return attempts


@app.function(image=image)
def with_helper(x: int) -> int:
    return helper_mod.double(x)


@app.function(image=image)
def add(a: int, b: int) -> int:
    return a + b


@app.function(image=image)
def network_interfaces() -> list[str]:
    return sorted(os.listdir("/sys/class/net"))


@app.function(image=image, block_network=True)
def network_interfaces_blocked() -> list[str]:
    return sorted(os.listdir("/sys/class/net"))


@app.function(image=image, restrict_modal_access=True)
def restricted(x: int, size: int = 0) -> dict:
    """Its own input and output (through a blob when large) work; calling another function does not."""
    try:
        square.remote(3)
        other = "allowed"
    except Exception as e:
        other = type(e).__name__
    return {"own": x * 2, "other": other, "payload": b"x" * size}


@app.function(image=image)
def sum_of_squares(n: int) -> int:
    return sum(square.map(range(n)))


@app.cls(image=image)
class Counter:
    start: int = modal.parameter(default=0)

    @modal.enter()
    def setup(self):
        print("entering Counter")
        self.value = self.start

    @modal.method()
    def add(self, n: int) -> int:
        self.value += n
        return self.value

    @modal.exit()
    def teardown(self):
        print("exiting Counter")


@app.local_entrypoint()
def main(x: int = 3, label: str = "result"):
    print(f"{label}: {square.remote(x)}")
