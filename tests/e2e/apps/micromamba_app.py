"""Image.micromamba(): its base image comes from a registry only; without one the error names it."""

import modal

app = modal.App("e2e-micromamba")
image = modal.Image.micromamba()


@app.function(image=image)
def f() -> None:
    pass
