"""A run_function step that raises: the client must see the traceback, and nothing is cached."""

import modal

app = modal.App("e2e-failing-function")


def explode() -> None:
    print("about to explode")
    raise RuntimeError("the build function broke")


image = modal.Image.debian_slim().run_function(explode)


@app.function(image=image)
def never() -> None:
    pass
