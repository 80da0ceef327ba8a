"""The hello-world of shoal: an unmodified Modal app.

    eval "$(shoal env)"
    modal run examples/hello.py
"""

import modal

app = modal.App("hello-shoal")
image = modal.Image.debian_slim()


@app.function(image=image)
def square(x: int) -> int:
    print(f"squaring {x} in a container")
    return x * x


@app.local_entrypoint()
def main(n: int = 10):
    print("square(7) =", square.remote(7))
    total = sum(square.map(range(n)))
    print(f"sum of squares below {n} =", total)
