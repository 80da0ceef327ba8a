"""`modal.forward()`: a function's HTTP server reached through its encrypted tunnel (TLS at the
worker, then the container's port) and through its unencrypted one (the port itself, which no
part of shoal is in: the yardstick). Times small requests, each on a new connection, and a large
download; and, as the yardstick of the encrypted download, the same bytes from a bare asyncio TLS
server with shoal's certificate (TLS alone, no forwarding).

    eval "$(shoal env)"; python bench/forward.py [--requests 200] [--mib 256]

The client trusts shoal's CA from `$SHOAL_HOME/tls/ca-bundle.pem` (shoal on this machine).
"""

import argparse
import asyncio
import http.client
import json
import os
import socket
import ssl
import statistics
import time

import modal

app = modal.App("bench-forward")
PORT = 8795
CHUNK = b"x" * (1 << 20)


@app.function(timeout=600)
def serve(queue: modal.Queue, mib: int) -> None:
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            size = mib if self.path == "/large" else 0
            self.send_response(200)
            self.send_header("Content-Length", str(size * len(CHUNK) or 2))
            self.end_headers()
            if size:
                for _ in range(size):
                    self.wfile.write(CHUNK)
            else:
                self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with modal.forward(PORT, unencrypted=True) as tunnel:
        queue.put({"tls": tunnel.tls_socket, "tcp": tunnel.tcp_socket})
        queue.get(timeout=600, partition="done")


def _connection(kind: str, address: tuple[str, int], context: ssl.SSLContext) -> http.client.HTTPConnection:
    host, port = address
    if kind == "tls":
        return http.client.HTTPSConnection(host, port, context=context, timeout=30)
    return http.client.HTTPConnection(host, port, timeout=30)


def _get(kind: str, address: tuple[str, int], context: ssl.SSLContext, path: str) -> int:
    conn = _connection(kind, address, context)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        size = 0
        while data := response.read(1 << 20):
            size += len(data)
        return size
    finally:
        conn.close()


async def _tls_alone(home: str, mib: int, context: ssl.SSLContext) -> float:
    """MiB/s from an asyncio TLS server with shoal's certificate to this client: TLS's own cost."""
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(os.path.join(home, "tls", "router.pem"), os.path.join(home, "tls", "router.key"))

    async def send(reader, writer):
        for _ in range(mib):
            writer.write(CHUNK)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(send, "127.0.0.1", 0, ssl=server_context)
    port = server.sockets[0].getsockname()[1]

    def receive() -> float:
        with context.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="127.0.0.1") as conn:
            t0, size = time.perf_counter(), 0
            while data := conn.recv(1 << 20):
                size += len(data)
            return size / (1 << 20) / (time.perf_counter() - t0)

    try:
        return await asyncio.to_thread(receive)
    finally:
        server.close()


def main(requests: int = 200, mib: int = 256) -> dict:
    from shoal.cli.state import shoal_home  # here, not in the function's container

    context = ssl.create_default_context(cafile=os.path.join(shoal_home(), "tls", "ca-bundle.pem"))
    results = {}
    with app.run(), modal.Queue.ephemeral() as queue:
        serve.spawn(queue, mib)
        found = queue.get(timeout=120)
        for kind in ("tls", "tcp"):
            address = tuple(found[kind])
            for _ in range(100):  # until the server listens
                try:
                    _get(kind, address, context, "/")
                    break
                except OSError:
                    time.sleep(0.1)
            samples = []
            for _ in range(requests):
                t0 = time.perf_counter()
                _get(kind, address, context, "/")
                samples.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            size = _get(kind, address, context, "/large")
            elapsed = time.perf_counter() - t0
            results[kind] = {
                "request_p50_ms": round(statistics.median(samples) * 1000, 2),
                "request_p95_ms": round(sorted(samples)[int(len(samples) * 0.95) - 1] * 1000, 2),
                "download_mib_s": round(size / (1 << 20) / elapsed, 1),
            }
        queue.put("done", partition="done")
    results["tls_alone_mib_s"] = round(asyncio.run(_tls_alone(shoal_home(), mib, context)), 1)
    print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--mib", type=int, default=256)
    args = parser.parse_args()
    main(args.requests, args.mib)
