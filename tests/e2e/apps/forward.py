"""modal.forward(): a function's port reached from outside its container through shoal's tunnels.

modal run forward.py --ca-bundle $SHOAL_HOME/tls/ca-bundle.pem
"""

import http.server
import os
import socket
import ssl
import threading
import time
import urllib.parse
import urllib.request

import modal

app = modal.App("e2e-forward")
PORT = 8790


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = os.environ["MODAL_TASK_ID"].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@app.function()
def serve(queue: modal.Queue) -> str:
    """Serves on PORT through forwarded tunnels until told it is done."""
    server = http.server.ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with modal.forward(PORT, unencrypted=True) as tunnel, modal.forward(PORT + 1, h2_enabled=True) as h2:
        try:
            with modal.forward(PORT):
                pass
        except Exception as e:
            twice = f"{type(e).__name__}: {e}"
        queue.put({"url": tunnel.url, "tcp": tunnel.tcp_socket, "h2": h2.tls_socket, "twice": twice})
        queue.get(timeout=120, partition="done")
    return os.environ["MODAL_TASK_ID"]


def fetch(url: str, context: ssl.SSLContext | None = None) -> str:
    for _ in range(50):
        try:
            return urllib.request.urlopen(url, context=context, timeout=10).read().decode()
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} never answered")


@app.local_entrypoint()
def main(ca_bundle: str):
    trusted = ssl.create_default_context(cafile=ca_bundle)
    with modal.Queue.ephemeral() as queue:
        call = serve.spawn(queue)
        found = queue.get(timeout=120)
        host, port = found["tcp"]
        print("url:", found["url"])
        print("https:", fetch(found["url"], trusted))
        print("tcp:", fetch(f"http://{host}:{port}"))
        trusted.set_alpn_protocols(["h2", "http/1.1"])
        with trusted.wrap_socket(socket.create_connection(tuple(found["h2"])), server_hostname=host) as conn:
            print("h2 alpn:", conn.selected_alpn_protocol())
        print("twice:", found["twice"])
        queue.put("done", partition="done")
        print("task:", call.get(timeout=120))
        tls = urllib.parse.urlsplit(found["url"])
        try:
            socket.create_connection((tls.hostname, tls.port), timeout=5).close()
            print("after: open")
        except OSError as e:
            print("after:", type(e).__name__)
