"""Requests to a server (`@app.server`) through shoal's web front: the first answer from zero
containers, warm round trips one at a time, many at once, and a large body each way; and the same
requests sent straight to the container's address, the yardstick of what the web front adds.

    eval "$(shoal env)"; python bench/server_requests.py [--n 1000] [--clients 32] [--mib 64]

The container runs Python's own threaded HTTP server (HTTP/1.1, keep-alive); the bench's client,
shoal and the container share this machine.
"""

import argparse
import asyncio
import hashlib
import http.server
import json
import os
import socket
import threading
import time

import aiohttp
import modal

app = modal.App("bench-server")
PORT = 8000


class Handler(http.server.BaseHTTPRequestHandler):
    """GET / answers "ok", /bytes/N N bytes, /address the container's address; POST the body's sha256."""

    protocol_version = "HTTP/1.1"
    # Its headers and body go out in two writes: with Nagle's algorithm on, the body waits for the
    # client's delayed ACK of the headers (40 ms) on a kept-alive connection.
    disable_nagle_algorithm = True

    def do_GET(self):
        if self.path.startswith("/bytes/"):
            self._answer(b"x" * int(self.path.rsplit("/", 1)[1]))
        elif self.path == "/address":  # its own: the source of its default route
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.connect(("10.255.255.255", 1))
                self._answer(probe.getsockname()[0].encode())
        else:
            self._answer(b"ok")

    def do_POST(self):
        digest, left = hashlib.sha256(), int(self.headers["Content-Length"])
        while left:
            chunk = self.rfile.read(min(left, 1 << 20))
            digest.update(chunk)
            left -= len(chunk)
        self._answer(digest.hexdigest().encode())

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@app.server(port=PORT, routing_region="us-east", unauthenticated=True, scaledown_window=60)
class Echo:
    @modal.enter()
    def start(self):
        server = http.server.ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()


async def figures(target, n: int, clients: int, mib: int) -> dict:
    from web_endpoint import _ms  # here: the server's container imports this file, without its neighbours

    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        await target.get()
        samples.append(time.perf_counter() - t0)
    left = [None] * (n * 2)

    async def client() -> None:
        while left:
            left.pop()
            await target.get()

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    rate = n * 2 / (time.perf_counter() - t0)
    body = os.urandom(mib << 20)
    t0 = time.perf_counter()
    assert await target.post(body) == hashlib.sha256(body).hexdigest().encode()
    upload = mib / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    assert len(await target.get(f"/bytes/{mib << 20}")) == mib << 20
    download = mib / (time.perf_counter() - t0)
    return {
        "warm_request": _ms(samples),
        f"requests_per_s_{clients}_clients": round(rate),
        f"upload_{mib}_mib_per_s": round(upload),
        f"download_{mib}_mib_per_s": round(download),
    }


async def measure(url: str, n: int, clients: int, mib: int) -> dict:
    from web_endpoint import Endpoint

    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=clients)) as session:
        shoal = Endpoint(session, url)
        t0 = time.perf_counter()
        assert await shoal.get() == b"ok"
        cold = time.perf_counter() - t0
        address = (await shoal.get("/address")).decode()
        direct = Endpoint(session, f"http://{address}:{PORT}")
        return {
            "first_request_cold_s": round(cold, 2),
            "through_shoal": await figures(shoal, n, clients, mib),
            "straight_to_the_container": await figures(direct, n, clients, mib),
        }


def main(n: int = 1000, clients: int = 32, mib: int = 64) -> dict:
    with app.run():
        return asyncio.run(measure(Echo.get_url(), n, clients, mib))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--mib", type=int, default=64)
    args = parser.parse_args()
    print(json.dumps(main(args.n, args.clients, args.mib), indent=2))
