"""Resolve a Docker-style user string against the container's own /etc/passwd and /etc/group."""

import os

from .spec import ContainerError


def _read_db(rootfs: str, name: str) -> list[list[str]]:
    path = os.path.realpath(os.path.join(rootfs, "etc", name))
    # A symlink leading out of the rootfs would make us read a host file: treat it as absent.
    if not path.startswith(os.path.realpath(rootfs) + os.sep):
        return []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            rows = [line.rstrip("\n").split(":") for line in f]
    except FileNotFoundError:
        return []
    return [r for r in rows if len(r) >= 3 and r[2].isdigit() and not r[0].startswith("#")]


def _find(rows: list[list[str]], key: str) -> list[str] | None:
    """Look up by name first, then by numeric id (as Docker does)."""
    for r in rows:
        if r[0] == key:
            return r
    if key.isdigit():
        for r in rows:
            if r[2] == key:
                return r
    return None


def resolve_user(rootfs: str, user: str | None) -> tuple[int, int, list[int]]:
    """Return (uid, gid, supplementary gids) for user, None meaning root."""
    if not user:
        return 0, 0, []
    name, _, group = user.partition(":")
    passwd = _find(_read_db(rootfs, "passwd"), name)
    if passwd and len(passwd) >= 4 and passwd[3].isdigit():
        uid, gid = int(passwd[2]), int(passwd[3])
    elif name.isdigit():
        uid, gid = int(name), 0
    else:
        raise ContainerError(f"user {name!r} not found in the container's /etc/passwd")
    groups = _read_db(rootfs, "group")
    if group:
        entry = _find(groups, group)
        if entry:
            gid = int(entry[2])
        elif group.isdigit():
            gid = int(group)
        else:
            raise ContainerError(f"group {group!r} not found in the container's /etc/group")
    extra: list[int] = []
    if passwd:
        extra = [int(g[2]) for g in groups if len(g) >= 4 and passwd[0] in g[3].split(",")]
    return uid, gid, extra
