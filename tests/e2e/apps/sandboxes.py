"""Sandboxes driven through the client: `python sandboxes.py SCENARIO` prints one JSON line."""

import json
import os
import sys
import time

import modal
from modal.exception import SandboxTimeoutError

APP = "e2e-sandboxes"
HERE = os.path.dirname(os.path.abspath(__file__))


def app() -> modal.App:
    return modal.App.lookup(APP, create_if_missing=True)


def stdio() -> dict:
    """A command's stdin, stdout, stderr and exit code, in the client's default kind of sandbox."""
    sb = modal.Sandbox.create(
        "bash", "-c", "echo héllo; echo oops >&2; read x; echo got $x; exit 3", app=app(), timeout=60
    )
    sb.stdin.write(b"line\n")
    sb.stdin.write_eof()
    sb.stdin.drain()
    out = {"stdout": sb.stdout.read(), "stderr": sb.stderr.read()}
    sb.wait()
    out["returncode"] = sb.returncode
    out["v2_id"] = sb.object_id.endswith("V")
    for _ in range(100):  # its output reaches the app's log as it is read, a moment after the end
        logged = {"stdout": "", "stderr": ""}
        for entry in sb.logs.tail():
            logged[entry.source] += entry.message
        if logged == {"stdout": out["stdout"], "stderr": out["stderr"]}:
            break
        time.sleep(0.1)
    out["logs"] = logged
    # Lines stream as they are printed, not when the command ends.
    sb = modal.Sandbox.create("bash", "-c", "for i in 1 2 3; do echo $i; sleep 0.5; done", app=app())
    t0, seen = time.monotonic(), []
    for line in sb.stdout:
        seen.append([line.strip(), time.monotonic() - t0])
    out["streamed"] = [n for n, _ in seen]
    out["first_line_before_last"] = seen[0][1] < seen[-1][1] - 0.5
    return out


def settings() -> dict:
    """Its environment, secrets, working directory, local files, volumes, and what it cannot reach."""
    volume = modal.Volume.from_name("e2e-sandbox-volume", create_if_missing=True)
    image = modal.Image.debian_slim().add_local_file(os.path.join(HERE, "data.txt"), "/opt/data.txt")
    script = (
        "pwd; echo $FOO $SECRET_X; cat /opt/data.txt; echo written > /vol/from-sandbox;"
        " echo api=${MODAL_SERVER_URL:-none}; ls -A /__shoal | wc -l"
    )
    sb = modal.Sandbox.create(
        "sh",
        "-c",
        script,
        app=app(),
        image=image,
        workdir="/tmp",
        env={"FOO": "bar"},
        secrets=[modal.Secret.from_dict({"SECRET_X": "s3cr3t"})],
        volumes={"/vol": volume},
    )
    sb.wait()
    lines = sb.stdout.read().splitlines()
    offline = modal.Sandbox.create(
        "python3",
        "-c",
        "import socket; socket.create_connection(('1.1.1.1', 80), timeout=2)",
        app=app(),
        block_network=True,
    )
    offline.wait()
    return {
        "lines": lines,
        "volume": b"".join(volume.read_file("from-sandbox")).decode(),
        "offline_returncode": offline.returncode,
        "offline_error": offline.stderr.read().strip().splitlines()[-1],
    }


def lifecycle() -> dict:
    """Commands run in it, names, tags, lookups, a timeout and termination."""
    a = app()
    sb = modal.Sandbox.create(app=a, name="e2e-named", timeout=120)  # no command: it waits
    ran = sb.exec("python3", "-c", "import sys; print(6 * 7); sys.exit(5)")
    out = {"exec": [ran.stdout.read().strip(), ran.wait()]}
    secret = modal.Secret.from_dict({"SECRET_Y": "y"})
    ran = sb.exec("sh", "-c", "pwd; echo $FOO $SECRET_Y", workdir="/tmp", env={"FOO": "x"}, secrets=[secret])
    out["exec_settings"] = ran.stdout.read().split()
    sb.set_tags({"team": "ml", "run": "1"})
    out["tags"] = sb.get_tags()
    out["from_name"] = modal.Sandbox.from_name(APP, "e2e-named").object_id == sb.object_id
    listed = modal.Sandbox.list(app_id=a.app_id, tags={"team": "ml"})
    out["listed_by_tag"] = [s.object_id == sb.object_id for s in listed]
    out["listed_by_other_tag"] = len(list(modal.Sandbox.list(app_id=a.app_id, tags={"team": "web"})))
    try:
        modal.Sandbox.create(app=a, name="e2e-named")
    except Exception as e:
        out["same_name"] = f"{type(e).__name__}: {e}"
    out["poll_running"] = modal.Sandbox.from_id(sb.object_id).poll()
    sb.terminate()
    sb.wait(raise_on_termination=False)
    out["terminated"] = sb.returncode
    try:
        sb.exec("true")
    except Exception as e:
        out["exec_after_end"] = f"{type(e).__name__}: {e}"
    slow = modal.Sandbox.create("sleep", "60", app=a, timeout=1)
    try:
        slow.wait()
    except SandboxTimeoutError:
        out["timed_out"] = slow.returncode
    return out


# Run in a sandbox: connects to HOST PORT ("gateway": its machine, through its bridge) and says how it went.
CONNECT = """
import socket, struct, sys
def gateway():
    for line in open("/proc/net/route").read().splitlines()[1:]:
        fields = line.split()
        if fields[1] == "00000000":
            return socket.inet_ntoa(struct.pack("<L", int(fields[2], 16)))
host = gateway() if sys.argv[1] == "gateway" else sys.argv[1]
try:
    socket.create_connection((host, int(sys.argv[2])), timeout=5).close()
    print("reached")
except OSError as e:
    print(type(e).__name__)
"""


def network() -> dict:
    """A sandbox's network is its own: it reaches its machine's services through its bridge, not on
    the machine's loopback; `outbound_cidr_allowlist=` limits where its connections go, and
    `outbound_domain_allowlist=` which servers its TLS connections reach (PyPI here)."""
    import socketserver
    import threading
    from urllib.parse import urlsplit

    server = socketserver.TCPServer(("0.0.0.0", 0), socketserver.BaseRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port, shoal_port = str(server.server_address[1]), str(urlsplit(os.environ["MODAL_SERVER_URL"]).port)
    a, out = app(), {}
    cases = {
        "open": (None, "gateway", port),
        "machine_loopback": (None, "127.0.0.1", shoal_port),
        "allowed": (["10.233.0.0/16"], "gateway", port),
        "not_allowed": (["192.0.2.123/32"], "gateway", port),
    }
    for name, (allowlist, host, to) in cases.items():
        sb = modal.Sandbox.create("python3", "-c", CONNECT, host, to, app=a, outbound_cidr_allowlist=allowlist)
        out[name] = sb.stdout.read().strip()
        sb.wait(raise_on_termination=False)
    fetch = "import sys, urllib.request\ntry:\n    print(urllib.request.urlopen(sys.argv[1], timeout=20).status)\n"
    fetch += "except Exception as e:\n    print(type(e).__name__)"
    for name, url in (("pypi", "https://pypi.org/simple/six/"), ("files", "https://files.pythonhosted.org/")):
        sb = modal.Sandbox.create("python3", "-c", fetch, url, app=a, outbound_domain_allowlist=["pypi.org"])
        out[f"domain_{name}"] = sb.stdout.read().strip()
        sb.wait(raise_on_termination=False)
    for name, kwargs in (
        ("bad_domain", {"outbound_domain_allowlist": ["not a domain"]}),
        ("bad_network", {"outbound_cidr_allowlist": ["not-a-network"]}),
    ):
        try:
            modal.Sandbox.create("true", app=a, **kwargs)
        except Exception as e:
            out[name] = f"{type(e).__name__}: {e}"
    server.shutdown()
    return out


def idle() -> dict:
    """`idle_timeout=`: a command of `exec` running keeps the sandbox, none for that long ends it."""
    sb = modal.Sandbox.create("sleep", "300", app=app(), idle_timeout=2, timeout=120)
    longer_than_idle = sb.exec("sleep", "4").wait()  # killed with the sandbox, were it idle meanwhile
    try:
        sb.wait()
    except SandboxTimeoutError:
        pass
    return {"returncode": sb.returncode, "exec": longer_than_idle}


def gpu() -> dict:
    """A GPU sandbox (the client's older kind of sandbox): its GPU, stdio and commands."""
    sb = modal.Sandbox.create(
        "bash", "-c", "echo $CUDA_VISIBLE_DEVICES; read x; echo got $x", app=app(), gpu="A10G", timeout=60
    )
    sb.stdin.write(b"ping\n")
    sb.stdin.drain()
    out = {"stdout": sb.stdout.read().splitlines(), "v1_id": not sb.object_id.endswith("V")}
    sb.wait()
    out["returncode"] = sb.returncode
    idle = modal.Sandbox.create(app=app(), gpu="A10G", timeout=60)
    ran = idle.exec("sh", "-c", "echo $CUDA_VISIBLE_DEVICES")
    out["exec"] = ran.stdout.read().strip()
    idle.terminate()
    try:
        modal.Sandbox.create("true", app=app(), gpu="B200")
    except Exception as e:
        out["impossible"] = f"{type(e).__name__}: {e}"
    return out


def queued() -> dict:
    """A sandbox that wants the pool's only A10G waits for it while another holds it."""
    import threading

    holder = modal.Sandbox.create("sleep", "120", app=app(), gpu="A10G", timeout=150)
    terminated, out = threading.Event(), {}

    def second() -> None:
        sb = modal.Sandbox.create("sh", "-c", "echo $CUDA_VISIBLE_DEVICES", app=app(), gpu="A10G", timeout=60)
        out["created_after_the_first_ended"] = terminated.is_set()
        out["stdout"] = sb.stdout.read().strip()

    waiting = threading.Thread(target=second)
    waiting.start()
    waiting.join(3)  # the second's create is still waiting for the GPU
    out["waited"] = waiting.is_alive()
    terminated.set()
    holder.terminate()
    waiting.join()
    return out


def terminal() -> dict:
    """A command on a terminal (`pty=True`, also the older kind)."""
    sb = modal.Sandbox.create("bash", "-c", "tty; read x; echo got $x", app=app(), pty=True, timeout=60)
    sb.stdin.write(b"abc\n")
    sb.stdin.drain()
    out = {"lines": sb.stdout.read().splitlines()}
    sb.wait()
    out["returncode"] = sb.returncode
    return out


def filesystem() -> dict:
    """`Sandbox.filesystem`: files written, read, listed, described and removed in the sandbox."""
    sb = modal.Sandbox.create(app=app(), timeout=120)
    fs = sb.filesystem
    data = bytes(range(256)) * 4096
    fs.write_bytes(data, "/tmp/work/deep/data.bin")
    fs.write_text("héllo\n", "/tmp/work/note.txt")
    out = {
        "round_trip": fs.read_bytes("/tmp/work/deep/data.bin") == data,
        "text": fs.read_text("/tmp/work/note.txt"),
        "seen_by_commands": sb.exec("cat", "/tmp/work/note.txt").stdout.read(),
        "listed": [[e.name, e.type.value] for e in fs.list_files("/tmp/work")],
        "size": fs.stat("/tmp/work/deep/data.bin").size,
    }
    try:
        fs.read_text("/tmp/work/missing")
    except Exception as e:
        out["missing"] = type(e).__name__
    fs.remove("/tmp/work", recursive=True)
    out["after_remove"] = sb.exec("ls", "/tmp").stdout.read().split()
    sb.terminate()
    return out


def snapshot() -> dict:
    """`snapshot_filesystem()`: an image of the sandbox's files now, for later sandboxes to start from."""
    sb = modal.Sandbox.create(app=app(), timeout=120)
    sb.exec("sh", "-c", "mkdir -p /srv/state && echo kept > /srv/state/f && rm /etc/issue").wait()
    image = sb.snapshot_filesystem()
    sb.exec("sh", "-c", "echo later > /srv/state/g").wait()  # after the snapshot: not in it
    sb.terminate()
    again = modal.Sandbox.create(
        "sh", "-c", "cat /srv/state/f; ls /srv/state; test -e /etc/issue || echo issue gone", app=app(), image=image
    )
    again.wait()
    return {"image_id": image.object_id, "lines": again.stdout.read().splitlines()}


def tunnels() -> dict:
    """A sandbox's web servers reached from outside: over TLS (trusting shoal's CA bundle, argv[2])
    through an encrypted tunnel, and as they are through an unencrypted one; an HTTP/2 tunnel
    offers h2 in its handshake, the others HTTP/1.1."""
    import socket
    import ssl
    import urllib.request

    script = "cd /etc && (python3 -m http.server 8765 & python3 -m http.server 8766)"
    sb = modal.Sandbox.create(
        "sh", "-c", script, app=app(), encrypted_ports=[8765], unencrypted_ports=[8766], h2_ports=[8767]
    )
    found = sb.tunnels()
    trusted = ssl.create_default_context(cafile=sys.argv[2])
    host, port = found[8766].tcp_socket
    urls = {"https": (found[8765].url, trusted), "tcp": (f"http://{host}:{port}", None)}
    out = {"https_url": found[8765].url}
    for name, (url, context) in urls.items():
        for _ in range(100):  # until the server listens
            try:
                out[name] = urllib.request.urlopen(url + "/debian_version", context=context, timeout=10).read().decode()
                break
            except OSError:
                time.sleep(0.2)
    trusted.set_alpn_protocols(["h2", "http/1.1"])
    for port in (8765, 8767):
        host, tls_port = found[port].tls_socket
        with trusted.wrap_socket(socket.create_connection((host, tls_port)), server_hostname=host) as conn:
            out[f"alpn {port}"] = conn.selected_alpn_protocol()
    sb.terminate()
    return out


# Run in a sandbox: answers each request with what it saw, as JSON.
ECHO_SERVER = """
import http.server, json, sys
class Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"path": self.path, "headers": dict(self.headers)}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.ThreadingHTTPServer(("0.0.0.0", int(sys.argv[1])), Echo).serve_forever()
"""


def connect() -> dict:
    """`create_connect_token()`: HTTP requests with the token reach the sandbox's port (8080 unless
    named), with the token's user metadata in X-Verified-User-Data; others are refused."""
    import urllib.error
    import urllib.request
    from urllib.parse import urlsplit

    def get(url: str, headers: dict | None = None) -> tuple[int, dict, str]:
        parts = urlsplit(url)  # *.localhost: connect to this machine, naming the host
        request = urllib.request.Request(
            f"http://127.0.0.1:{parts.port}{parts.path or '/'}{'?' + parts.query if parts.query else ''}",
            headers={"Host": parts.netloc, **(headers or {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, dict(response.headers), response.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read().decode()

    a = app()
    sb = modal.Sandbox.create("python3", "-c", ECHO_SERVER, "8080", app=a)
    other = modal.Sandbox.create("python3", "-c", ECHO_SERVER, "9000", app=a)
    creds = sb.create_connect_token(user_metadata={"user": "ana"})
    elsewhere = other.create_connect_token(port=9000)
    bearer = {"Authorization": f"Bearer {creds.token}"}
    out = {}
    for _ in range(100):  # until its server listens
        status, _, body = get(creds.url + "/a/b?x=1", {**bearer, "X-Verified-User-Data": "forged"})
        if status == 200:
            break
        time.sleep(0.2)
    seen = json.loads(body)
    out["bearer"] = [seen["path"], seen["headers"].get("X-Verified-User-Data"), "Authorization" in seen["headers"]]
    status, headers, body = get(f"{creds.url}/q?_modal_connect_token={creds.token}")
    out["query"] = [status, headers.get("Set-Cookie", "").split("=", 1)[0]]
    out["cookie"] = get(creds.url + "/c", {"Cookie": f"_modal_connect_token={creds.token}"})[0]
    out["none"] = get(creds.url + "/")[0]
    out["forged_only"] = get(creds.url + "/", {"X-Verified-User-Data": "forged"})[0]
    out["another_sandboxs_token"] = get(creds.url + "/", {"Authorization": f"Bearer {elsewhere.token}"})[0]
    status, _, body = get(elsewhere.url + "/other", {"Authorization": f"Bearer {elsewhere.token}"})
    out["port_9000"] = [status, json.loads(body)["headers"].get("X-Verified-User-Data") if status == 200 else body]
    sb.terminate()
    sb.wait(raise_on_termination=False)
    out["after_terminate"] = get(creds.url + "/", bearer)[0]
    other.terminate()
    return out


def inbound() -> dict:
    """`inbound_cidr_allowlist=`: its tunnels and connect tokens take connections from those networks alone."""
    import urllib.error
    import urllib.request

    def fetch(url: str, headers: dict) -> str:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
                return str(response.status)
        except urllib.error.HTTPError as e:
            return str(e.code)
        except Exception as e:
            return type(e).__name__

    out = {}
    for name, cidrs in (("here", ["127.0.0.0/8"]), ("elsewhere", ["192.0.2.0/24"])):
        sb = modal.Sandbox.create(
            "python3", "-c", ECHO_SERVER, "8080", app=app(), unencrypted_ports=[8080], inbound_cidr_allowlist=cidrs
        )
        host, port = sb.tunnels()[8080].tcp_socket
        creds = sb.create_connect_token()
        label_host = creds.url.split("://", 1)[1]
        web_port = label_host.rsplit(":", 1)[1]
        token = {"Host": label_host, "Authorization": f"Bearer {creds.token}"}
        for _ in range(100):  # until its server listens
            seen = [fetch(f"http://{host}:{port}/", {}), fetch(f"http://127.0.0.1:{web_port}/", token)]
            if name == "elsewhere" or seen == ["200", "200"]:
                break
            time.sleep(0.2)
        out[name] = seen
        sb.terminate()
    return out


def ready() -> dict:
    """`readiness_probe=` and `wait_until_ready()`: once it returns, what the probe checks is there."""
    slow_start = "sleep 1; touch /tmp/ready; cd /etc && python3 -m http.server 8770"
    out = {}
    for name, probe in (
        ("exec", modal.Probe.with_exec("test", "-f", "/tmp/ready")),
        ("tcp", modal.Probe.with_tcp(8770)),
    ):
        sb = modal.Sandbox.create("sh", "-c", slow_start, app=app(), readiness_probe=probe, timeout=60)
        sb.wait_until_ready(timeout=60)
        if name == "exec":
            out[name] = sb.exec("ls", "/tmp").stdout.read().split()
        else:
            fetch = (
                "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8770/debian_version').read())"
            )
            out[name] = sb.exec("python3", "-c", fetch).stdout.read()
        sb.terminate()
    never = modal.Sandbox.create("sleep", "60", app=app(), readiness_probe=modal.Probe.with_tcp(8771))
    try:
        never.wait_until_ready(timeout=1)
    except modal.exception.TimeoutError:
        out["never"] = "timed out"
    never.terminate()
    return out


def start() -> dict:
    """A sandbox left running, for the test to look at from outside."""
    sb = modal.Sandbox.create("sh", "-c", "echo started; sleep 600", app=app(), timeout=900)
    return {"sandbox_id": sb.object_id, "task_id": sb._get_task_id()}


def result() -> dict:
    """How the sandbox `start` made ended."""
    sb = modal.Sandbox.from_id(sys.argv[2])
    sb.wait(raise_on_termination=False)
    return {"returncode": sb.returncode}


if __name__ == "__main__":
    print(json.dumps(globals()[sys.argv[1]]()))
