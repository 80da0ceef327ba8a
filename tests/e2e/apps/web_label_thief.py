"""Another app claiming a label the deployed e2e-web app holds: its deploy is refused."""

import modal

app = modal.App("e2e-web-thief")


@app.function()
@modal.asgi_app(label="e2e-raw")
def raw():
    async def asgi(scope, receive, send):
        pass

    return asgi
