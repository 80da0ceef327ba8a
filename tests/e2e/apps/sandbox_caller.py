"""A function that makes sandboxes, as agents do: from inside its container, whose client reaches
the command router over TLS. `modal run sandbox_caller.py` prints one JSON line."""

import json

import modal

app = modal.App("e2e-sandbox-caller")


@app.function()
def use_sandboxes() -> dict:
    sb = modal.Sandbox.create("bash", "-c", "read x; echo got $x", timeout=60)  # in this function's app
    out = {"exec": sb.exec("echo", "exec too").stdout.read()}
    sb.stdin.write(b"from a function\n")
    sb.stdin.write_eof()
    sb.stdin.drain()
    out["stdout"] = sb.stdout.read()
    sb.wait()
    out["returncode"] = sb.returncode
    sb = modal.Sandbox.create(timeout=60)
    sb.filesystem.write_text("kept\n", "/tmp/note")
    image = sb.snapshot_filesystem()
    sb.terminate()
    again = modal.Sandbox.create("cat", "/tmp/note", image=image, timeout=60)
    out["from_snapshot"] = again.stdout.read()
    return out


@app.local_entrypoint()
def main():
    print(json.dumps(use_sandboxes.remote()))
