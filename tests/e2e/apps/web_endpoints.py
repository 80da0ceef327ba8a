"""Web endpoints of every kind the client declares, each served at a host of its own."""

import hashlib
import os
import subprocess

import modal

app = modal.App("e2e-web")
# fastapi_endpoint wraps the function in a FastAPI app, so its image needs FastAPI.
fastapi_image = modal.Image.debian_slim().pip_install("fastapi==0.115.12")
WEB_SERVER_PORT = 18777


@app.function(image=fastapi_image)
@modal.fastapi_endpoint()
def greet(name: str = "world") -> dict:
    return {"hello": name}


@app.function(image=fastapi_image)
@modal.fastapi_endpoint(method="POST", requires_proxy_auth=True)
def total(numbers: list[int]) -> dict:
    return {"total": sum(numbers)}


@app.function()
@modal.asgi_app(label="e2e-raw")
def raw():
    """A bare ASGI app: it reads the whole body, then answers in chunks with what it saw."""

    async def asgi(scope, receive, send):
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"] == "/fail":
            raise RuntimeError("the app failed before answering")
        headers = [(b"content-type", b"text/plain"), (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")]
        await send({"type": "http.response.start", "status": 201, "headers": headers})
        seen = f"{scope['method']} {scope['path']} {scope['query_string'].decode()}\n"
        await send({"type": "http.response.body", "body": seen.encode(), "more_body": True})
        agent = dict(scope["headers"]).get(b"user-agent", b"").decode()
        await send({"type": "http.response.body", "body": f"agent {agent}\n".encode(), "more_body": True})
        digest = hashlib.sha256(body).hexdigest()
        await send({"type": "http.response.body", "body": f"{len(body)} {digest}\n".encode()})

    return asgi


@app.function()
@modal.asgi_app()
def slow():
    """Answers after a minute; says in a dict when it starts, and when its input is cancelled."""
    import asyncio

    seen = modal.Dict.from_name("e2e-web-slow", create_if_missing=True)

    async def asgi(scope, receive, send):
        if scope["type"] != "http":
            return
        await seen.put.aio("state", "started")
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            await seen.put.aio("state", "cancelled")
            raise
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"too late"})

    return asgi


@app.function()
@modal.asgi_app()
def chat():
    """WebSockets: text comes back upper-cased, bytes reversed; "bye" closes with code 4000; a
    connection to /private is refused."""

    async def asgi(scope, receive, send):
        if scope["type"] != "websocket":
            return
        await receive()  # websocket.connect
        if scope["path"] == "/private":
            await send({"type": "websocket.close", "code": 1008})
            return
        await send({"type": "websocket.accept", "subprotocol": (scope["subprotocols"] or [None])[0]})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") == "bye":
                await send({"type": "websocket.close", "code": 4000, "reason": "bye"})
                return
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": message["text"].upper()})
            else:
                await send({"type": "websocket.send", "bytes": message["bytes"][::-1]})

    return asgi


@app.function()
@modal.wsgi_app()
def classic():
    def application(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [f"wsgi {environ['REQUEST_METHOD']} {environ['PATH_INFO']}\n".encode()]

    return application


@app.function()
@modal.web_server(WEB_SERVER_PORT, startup_timeout=60)
def server():
    """A server of the user's own, on the container's network: Python's file server."""
    os.makedirs("/srv/site", exist_ok=True)
    with open("/srv/site/index.html", "w") as f:
        f.write("served by a web server\n")
    subprocess.Popen(["python", "-m", "http.server", str(WEB_SERVER_PORT), "--directory", "/srv/site"])


@app.cls()
class Counter:
    @modal.enter()
    def start(self):
        self.greeting = "entered"

    @modal.asgi_app()
    def web(self):
        greeting = self.greeting

        async def asgi(scope, receive, send):
            if scope["type"] != "http":
                return
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": f"{greeting}\n".encode()})

        return asgi


@app.function()
def plain() -> str:
    return "a plain function beside the endpoints"


@app.local_entrypoint()
def main():
    """`modal run`: the app's endpoints are served while it runs, at their -dev URLs."""
    import urllib.request
    from urllib.parse import urlsplit

    url = raw.get_web_url()
    print("url", url)
    # Python's resolver knows no *.localhost: connect to the port and name the host.
    port = urlsplit(url).port
    request = urllib.request.Request(f"http://127.0.0.1:{port}/from-run?x=1", headers={"Host": urlsplit(url).netloc})
    print(urllib.request.urlopen(request, timeout=60).read().decode())
    print(plain.remote())
