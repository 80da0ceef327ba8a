"""Volumes: functions that write and read a named volume, a read-only mount, an ephemeral
volume given to a function through with_options(), and the Volume API from outside."""

import io
import json
import os
import sys

import modal

app = modal.App("e2e-volumes")
vol = modal.Volume.from_name("e2e-data", create_if_missing=True)


@app.function(volumes={"/data": vol})
def write(name: str, text: str) -> list[str]:
    path = os.path.join("/data", name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    vol.commit()
    return sorted(os.listdir("/data"))


@app.function(volumes={"/data": vol})
def read(name: str) -> str:
    vol.reload()
    with open(os.path.join("/data", name)) as f:
        return f.read()


@app.function(volumes={"/data": vol})
def link(name: str, target: str) -> None:
    """A symlink in the volume to a path outside it (on the server's machine, if anything followed it)."""
    os.symlink(target, os.path.join("/data", name))


@app.function(volumes={"/ro": vol.read_only()})
def write_read_only() -> str:
    try:
        with open("/ro/nope.txt", "w") as f:
            f.write("x")
    except OSError as e:
        return e.strerror
    return "written"


@app.function()
def listing(path: str) -> list[str]:
    """What the mounted volume holds, seen from a function that mounts it through with_options()."""
    return sorted(os.listdir(path))


@app.local_entrypoint()
def main(name: str = "notes/a.txt", text: str = "hello volume"):
    print("listed", write.remote(name, text))
    print("read", read.remote(name))
    print("read-only", write_read_only.remote())


@app.local_entrypoint()
def show(name: str):
    print("read", read.remote(name))


def api() -> dict:
    """The Volume API from a script: an ephemeral volume, written, read, copied, removed, and
    mounted into a function with with_options()."""
    out = {}
    with app.run(), modal.Volume.ephemeral() as eph:
        with eph.batch_upload() as upload:
            upload.put_file(io.BytesIO(b"one"), "/x/one.txt")
            upload.put_file(io.BytesIO(b"two" * 5_000_000), "/x/two.bin")
        eph.copy_files(["/x/one.txt"], "/x/copy.txt")
        out["listed"] = sorted((e.path, e.type.name, e.size) for e in eph.listdir("/", recursive=True))
        out["two"] = len(b"".join(eph.read_file("/x/two.bin")))
        out["mounted"] = listing.with_options(volumes={"/eph": eph}).remote("/eph/x")
        eph.remove_file("/x", recursive=True)
        out["after_remove"] = [e.path for e in eph.listdir("/")]
        try:
            with eph.batch_upload() as upload:
                upload.put_file(io.BytesIO(b"a"), "/same.txt")
                upload.put_file(io.BytesIO(b"b"), "/same.txt")
            with eph.batch_upload() as upload:
                upload.put_file(io.BytesIO(b"c"), "/same.txt")
        except FileExistsError as e:
            out["exists"] = str(e)
    return out


def read_file(path: str) -> str:
    """A file of the named volume, read from outside a container (hex), or the error."""
    try:
        return b"".join(vol.read_file(path)).hex()
    except Exception as e:
        return f"{type(e).__name__}: {e}"


if __name__ == "__main__":
    print(json.dumps({"api": api, "read_file": read_file}[sys.argv[1]](*sys.argv[2:])))
