#!/usr/bin/env python3
"""The file tool a sandbox's client runs in it for `Sandbox.filesystem` (read, write, list, stat,
make directories, remove, watch): `modal-sandbox-fs-tools '{"ReadFile": {"path": "/x"}}'`.

The worker mounts this file into every sandbox's container where the client looks for the tool.
It runs there as the sandbox's own commands do, with the image's python3 and the container's user,
so it sees and may touch only what they may. Results go to stdout (a file's bytes, or JSON); a
failure exits 1 with {"error_kind", "message"} as JSON on stderr, named as the client expects.
Standard library only, and no syntax newer than the oldest Python an image may have.
"""

import errno
import grp
import json
import os
import pwd
import shutil
import stat
import sys
import threading
import time

CHUNK = 1024 * 1024
WATCH_INTERVAL = 0.2  # seconds between looks at a watched path


class Failure(Exception):
    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


# OSError's errno -> the error kind the client names
_KINDS = {
    errno.ENOENT: "NotFound",
    errno.ENOTDIR: "NotDirectory",
    errno.EISDIR: "IsDirectory",
    errno.EACCES: "PermissionDenied",
    errno.EPERM: "PermissionDenied",
    errno.ENOTEMPTY: "DirectoryNotEmpty",
    errno.EEXIST: "PathAlreadyExists",
}


def _name(table, ident):
    try:
        return table(ident)[0]
    except KeyError:
        return str(ident)


def entry(path):
    """A path's FileInfo, as the client reads it; a symlink is described, not followed."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        kind = "symlink"
    elif stat.S_ISDIR(st.st_mode):
        kind = "directory"
    else:
        kind = "file"
    return {
        "name": os.path.basename(path.rstrip("/")) or "/",
        "path": path,
        "type": kind,
        "size": st.st_size,
        "mode": stat.S_IMODE(st.st_mode),
        "permissions": stat.filemode(st.st_mode),
        "owner": _name(pwd.getpwuid, st.st_uid),
        "group": _name(grp.getgrgid, st.st_gid),
        "modified_time": st.st_mtime,
        "symlink_target": os.readlink(path) if kind == "symlink" else None,
    }


def read_file(path):
    if os.path.isdir(path):
        raise Failure("IsDirectory", "Is a directory")
    out = sys.stdout.buffer
    with open(path, "rb") as f:
        shutil.copyfileobj(f, out, CHUNK)
    out.flush()


def write_file(path):
    if os.path.isdir(path):
        raise Failure("IsDirectory", "Is a directory")
    parent = os.path.dirname(path)
    try:
        os.makedirs(parent, exist_ok=True)
    except FileExistsError:  # a file where a directory on the way should be
        raise Failure("NotDirectory", "Not a directory")
    with open(path, "wb") as f:
        shutil.copyfileobj(sys.stdin.buffer, f, CHUNK)


def list_files(path):
    if not os.path.isdir(path):
        os.lstat(path)  # NotFound for a path that is not there
        raise Failure("NotDirectory", "Not a directory")
    with os.scandir(path) as entries:
        found = [entry(os.path.join(path, e.name)) for e in entries]
    json.dump(sorted(found, key=lambda e: e["name"]), sys.stdout)


def remove(path, recursive):
    if os.path.isdir(path) and not os.path.islink(path):
        if recursive:
            shutil.rmtree(path)
        else:
            os.rmdir(path)
    else:
        os.unlink(path)


def make_directory(path, parents):
    if parents:
        if os.path.exists(path) and not os.path.isdir(path):
            raise Failure("PathAlreadyExists", "A file is in the way")
        os.makedirs(path, exist_ok=True)
    else:
        os.mkdir(path)


def _snapshot(path, recursive):
    """path -> mtime of the watched path, or of the entries under it."""
    if not os.path.isdir(path):
        return {path: os.stat(path).st_mtime_ns} if os.path.exists(path) else {}
    seen = {}
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            full = os.path.join(root, name)
            try:
                seen[full] = os.lstat(full).st_mtime_ns
            except OSError:
                pass
        if not recursive:
            break
    return seen


def watch(path, recursive, wanted, timeout):
    """Changes under the path, one JSON line each, until stdin closes or the timeout passes."""
    path = os.path.realpath(path)
    os.stat(path)  # NotFound for a path that is not there
    closed = threading.Event()

    def wait_for_eof():
        # The raw descriptor: a thread blocked in the buffered reader would abort the exit.
        while os.read(0, CHUNK):
            pass
        closed.set()

    threading.Thread(target=wait_for_eof, daemon=True).start()
    deadline = time.monotonic() + timeout if timeout else None
    before = _snapshot(path, recursive)
    while not closed.wait(WATCH_INTERVAL):
        if deadline is not None and time.monotonic() > deadline:
            return
        now = _snapshot(path, recursive)
        events = [("Create", p) for p in now if p not in before]
        events += [("Modify", p) for p in now if p in before and now[p] != before[p]]
        events += [("Remove", p) for p in before if p not in now]
        for kind, changed in sorted(events, key=lambda e: e[1]):
            if wanted is None or kind in wanted:
                sys.stdout.write(json.dumps({"paths": [changed], "event_type": kind}) + "\n")
        sys.stdout.flush()
        before = now


def run(command):
    ((name, args),) = command.items()
    path = args["path"]
    if name == "ReadFile":
        read_file(path)
    elif name == "WriteFile":
        write_file(path)
    elif name == "ListFiles":
        list_files(path)
    elif name == "Stat":
        json.dump(entry(path), sys.stdout)
    elif name == "Remove":
        remove(path, args.get("recursive", False))
    elif name == "MakeDirectory":
        make_directory(path, args.get("parents", True))
    elif name == "Watch":
        watch(path, args.get("recursive", False), args.get("filter"), args.get("timeout_secs"))
    else:
        raise Failure("NotSupported", "Unknown command " + name)


def main():
    try:
        run(json.loads(sys.argv[1]))
    except Failure as e:
        kind, message = e.kind, str(e)
    except OSError as e:
        kind, message = _KINDS.get(e.errno, "Other"), e.strerror or str(e)
    else:
        return 0
    sys.stderr.write(json.dumps({"error_kind": kind, "message": message}))
    return 1


if __name__ == "__main__":
    sys.exit(main())
