"""Volume mounts with sub_path=: functions and a sandbox that see one directory of a volume.

`modal run volume_sub_paths.py` writes through the mounts; `python volume_sub_paths.py SCENARIO`
prints one JSON line."""

import json
import os
import sys

import modal

APP = "e2e-volume-sub-paths"
app = modal.App(APP)
vol = modal.Volume.from_name("e2e-sub-paths", create_if_missing=True)


@app.function(volumes={"/part": vol.with_mount_options(sub_path="a/b")})
def write_part(name: str, text: str) -> list[str]:
    with open(os.path.join("/part", name), "w") as f:
        f.write(text)
    vol.commit()  # commit and reload are the whole volume's, whatever the mount shows
    vol.reload()
    return sorted(os.listdir("/part"))


@app.function(volumes={"/whole": vol})
def read_whole(path: str) -> str:
    with open(os.path.join("/whole", path)) as f:
        return f.read()


@app.function(volumes={"/ro": vol.with_mount_options(sub_path="/a/b", read_only=True)})
def read_only_part(name: str) -> list[str]:
    with open(os.path.join("/ro", name)) as f:
        text = f.read()
    try:
        open("/ro/nope.txt", "w").close()
        error = "written"
    except OSError as e:
        error = e.strerror
    return [text, error]


@app.function(volumes={"/fresh": vol.with_mount_options(sub_path="made/at/start")})
def fresh() -> list[str]:
    return sorted(os.listdir("/fresh"))


@app.function(volumes={"/whole": vol})
def link(name: str, target: str) -> None:
    """A symlink in the volume, pointing out of it (at the server's machine, if a mount followed it)."""
    os.symlink(target, os.path.join("/whole", name))


@app.local_entrypoint()
def main():
    print("part", write_part.remote("x.txt", "written in a/b"))
    print("whole", read_whole.remote("a/b/x.txt"))
    print("read-only", read_only_part.remote("x.txt"))
    print("fresh", fresh.remote())


def sandbox() -> dict:
    """A sandbox that mounts the volume's a/b at /part."""
    sb = modal.Sandbox.create(
        "sh",
        "-c",
        "ls /part; echo from sandbox > /part/sb.txt",
        app=modal.App.lookup(APP, create_if_missing=True),
        volumes={"/part": vol.with_mount_options(sub_path="a/b")},
    )
    sb.wait()
    return {"listed": sb.stdout.read().split(), "written": b"".join(vol.read_file("a/b/sb.txt")).decode()}


def escape() -> str:
    """A function whose sub_path climbs out of the volume: refused when the app starts."""
    other = modal.App("e2e-volume-sub-path-escape")

    @other.function(volumes={"/up": vol.with_mount_options(sub_path="a/../../x")}, serialized=True)
    def up() -> None:
        pass

    try:
        with other.run():
            up.remote()
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    return "ran"


def through_link(sub_path: str) -> str:
    """A function whose sub_path goes through a symlink a container left: it must not start."""
    other = modal.App("e2e-volume-sub-path-link")

    @other.function(volumes={"/linked": vol.with_mount_options(sub_path=sub_path)}, serialized=True, retries=0)
    def linked() -> list[str]:
        return sorted(os.listdir("/linked"))

    try:
        with other.run():
            return f"ran: {linked.remote()}"
    except Exception as e:
        return f"{type(e).__name__}: {e}"


if __name__ == "__main__":
    scenarios = {"sandbox": sandbox, "escape": escape, "through_link": through_link}
    print(json.dumps(scenarios[sys.argv[1]](*sys.argv[2:])))
