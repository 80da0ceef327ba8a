"""The app the benchmarks call: trivial functions on the default image."""

import modal

app = modal.App("shoal-bench")
image = modal.Image.debian_slim()


@app.function(image=image)
def echo(x):
    return x
