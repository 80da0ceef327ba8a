"""Web endpoint requests through shoal's ingress: a request's first cold answer, warm round trips
one at a time, many at once against a concurrent endpoint, and a large body each way.

    eval "$(shoal env)"; python bench/web_endpoint.py [--n 1000] [--clients 32] [--mib 64]

A request is one input: the ingress stores it, a container takes it, the client's runtime in the
container runs the ASGI app, and its messages stream back; the figures below include all of it.
"""

import argparse
import asyncio
import hashlib
import json
import statistics
import time
from urllib.parse import urlsplit

import aiohttp
import modal

app = modal.App("bench-web")


def _echo_app():
    """A bare ASGI app: GET answers "ok"; POST answers the body's sha256; /bytes/N answers N bytes."""

    async def asgi(scope, receive, send):
        if scope["type"] != "http":
            return
        digest = hashlib.sha256()
        while True:
            message = await receive()
            digest.update(message.get("body", b""))
            if not message.get("more_body"):
                break
        if scope["path"].startswith("/bytes/"):
            body = b"x" * int(scope["path"].rsplit("/", 1)[1])
        else:
            body = digest.hexdigest().encode() if scope["method"] == "POST" else b"ok"
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})

    return asgi


@app.function(scaledown_window=60)
@modal.asgi_app()
def echo():
    return _echo_app()


@app.function(scaledown_window=60)
@modal.concurrent(max_inputs=64)
@modal.asgi_app()
def echo_concurrent():
    return _echo_app()


def _ms(samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 2),
    }


class Endpoint:
    """Requests to a URL, naming its host; a *.localhost one is this machine's, as curl has it."""

    def __init__(self, session: aiohttp.ClientSession, url: str):
        self.session, parts = session, urlsplit(url)
        machine = "127.0.0.1" if parts.hostname.endswith(".localhost") else parts.hostname
        self.base, self.host = f"http://{machine}:{parts.port or 80}", parts.netloc

    async def get(self, path: str = "/") -> bytes:
        async with self.session.get(self.base + path, headers={"Host": self.host}) as response:
            response.raise_for_status()
            return await response.read()

    async def post(self, body: bytes) -> bytes:
        async with self.session.post(self.base + "/", data=body, headers={"Host": self.host}) as response:
            response.raise_for_status()
            return await response.read()


async def measure(echo_url: str, concurrent_url: str, n: int, clients: int, mib: int) -> dict:
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=clients)) as session:
        echo_ep, concurrent_ep = Endpoint(session, echo_url), Endpoint(session, concurrent_url)
        t0 = time.perf_counter()
        assert await echo_ep.get() == b"ok"
        cold = time.perf_counter() - t0

        samples = []
        for _ in range(n):
            t0 = time.perf_counter()
            await echo_ep.get()
            samples.append(time.perf_counter() - t0)

        await asyncio.gather(*(concurrent_ep.get() for _ in range(clients)))  # its container is up
        queue = asyncio.Queue()
        for _ in range(n * 2):
            queue.put_nowait(None)

        async def client() -> None:
            while not queue.empty():
                queue.get_nowait()
                await concurrent_ep.get()

        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        concurrent_rate = n * 2 / (time.perf_counter() - t0)

        body = bytes(range(256)) * (mib * 4096)
        t0 = time.perf_counter()
        assert await echo_ep.post(body) == hashlib.sha256(body).hexdigest().encode()
        upload = mib / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        assert len(await echo_ep.get(f"/bytes/{mib * 1024**2}")) == mib * 1024**2
        download = mib / (time.perf_counter() - t0)
    return {
        "first_request_cold_s": round(cold, 2),
        "warm_request": _ms(samples),
        f"requests_per_s_{clients}_clients": round(concurrent_rate),
        f"upload_{mib}_mib_per_s": round(upload),
        f"download_{mib}_mib_per_s": round(download),
    }


def main(n: int = 1000, clients: int = 32, mib: int = 64) -> dict:
    with app.run():
        return asyncio.run(measure(echo.get_web_url(), echo_concurrent.get_web_url(), n, clients, mib))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--mib", type=int, default=64)
    args = parser.parse_args()
    print(json.dumps(main(args.n, args.clients, args.mib), indent=2))
