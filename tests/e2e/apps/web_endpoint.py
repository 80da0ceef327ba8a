"""A web endpoint: shoal serves none yet, so deploying it must fail saying so; `modal run` runs the app's
other functions."""

import modal

app = modal.App("e2e-web-endpoint")


@app.function()
@modal.fastapi_endpoint()
def hello() -> str:
    return "hello"


@app.function()
def plain() -> None:
    print("plain")
