"""The app the benchmarks call: trivial functions on the default image."""

import modal

app = modal.App("shoal-bench")
image = modal.Image.debian_slim()


@app.function(image=image, min_containers=0)
def echo(x):
    return x
