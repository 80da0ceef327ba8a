"""Servers (`@app.server`): containers running an HTTP server of their own, reached at the
server's URL through shoal's web front.

modal deploy servers.py
"""

import http.server
import json
import os
import threading
import time

import modal

app = modal.App("e2e-servers")
PORT = 8000


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path.startswith("/slow"):
            time.sleep(float(self.path.partition("?")[2] or 1))
        self._answer(200, {"task": os.environ["MODAL_TASK_ID"], "path": self.path, "headers": dict(self.headers)})

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self._answer(201, {"reversed": body[::-1].decode()})

    def _answer(self, status: int, value: dict) -> None:
        body = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def serve() -> None:
    server = http.server.ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()


@app.server(port=PORT, routing_region="us-east", unauthenticated=True, min_containers=2)
class Echo:
    @modal.enter()
    def start(self):
        serve()  # both containers listen on port 8000: each has a network of its own


@app.server(port=PORT, routing_region="us-east")
class Private:
    @modal.enter()
    def start(self):
        serve()


@app.server(port=PORT, routing_region="us-east", unauthenticated=True, max_concurrency=1, max_containers=1)
class Capped:
    @modal.enter()
    def start(self):
        serve()


@app.server(port=PORT, routing_region="us-east", unauthenticated=True, scaledown_window=2)
class Brief:
    @modal.enter()
    def start(self):
        serve()

    @modal.exit()
    def stop(self):
        # Idle past its scaledown_window, the container gets SIGTERM, and its @exit runs.
        modal.Dict.from_name("e2e-servers", create_if_missing=True)["exited"] = os.environ["MODAL_TASK_ID"]


@app.function(min_containers=2)
@modal.web_server(PORT)
def classic():
    # A @modal.web_server's containers also get networks of their own: two share this machine's port.
    serve()


@app.server(port=PORT, routing_region="us-east", unauthenticated=True)
class Broken:
    @modal.enter()
    def start(self):
        raise RuntimeError("no model here")
